//! Upstream links on the worker loop: starting the links whose destination this worker owns,
//! their readiness events and their timer ticks. The link's protocol is in `crate::link`; this
//! file only connects it to the poll and the timer heap. Runs on the worker's thread.

use super::*;

impl Worker {
    /// Take on the upstream links whose destination this worker owns.
    pub(super) fn start_links(&mut self) {
        let n = self.node.ctx.outbox.workers();
        for (name, cfg) in self.node.ctx.env.cfg.downstreams.clone() {
            if crate::broker::owner_of(&name, n) != self.node.ctx.worker {
                continue;
            }
            match crate::link::Link::new(&name, &cfg) {
                Some(l) => self.node.links.push((l, None)),
                None => log::error!("link {name}: bad address {:?}", cfg.address),
            }
        }
        for i in 0..self.node.links.len() {
            let now = Instant::now();
            let next = self.node.links[i].0.connect(self.poll.registry(), Token(LINK_BASE + i), now);
            self.schedule_link(i, next, now);
        }
    }

    /// Arm a link's tick unless an earlier one is armed.
    pub(super) fn schedule_link(&mut self, i: usize, next: crate::link::Next, now: Instant) {
        let crate::link::Next::TickIn(d) = next else { return };
        let at = now + d;
        let slot = &mut self.node.links[i].1;
        if slot.is_some_and(|t| t <= at && t > now) {
            return;
        }
        *slot = Some(at);
        self.node.ctx.time.timers.arm_worker(at, WorkerTimer::Link(i as u32));
    }

    pub(super) fn link_event(&mut self, i: usize, readable: bool, writable: bool) {
        let now = self.node.ctx.time.now;
        let Some((link, _)) = self.node.links.get_mut(i) else { return };
        let next = link.on_ready(self.poll.registry(), now, readable, writable, &mut self.node.shard, &mut self.node.ctx.outbox);
        self.schedule_link(i, next, now);
    }

    pub(super) fn link_tick(&mut self, i: usize, at: Instant) {
        let now = self.node.ctx.time.now;
        let Some((link, armed)) = self.node.links.get_mut(i) else { return };
        if *armed != Some(at) {
            return; // superseded by an earlier tick
        }
        *armed = None;
        let next = link.tick(self.poll.registry(), Token(LINK_BASE + i), now, &mut self.node.shard, &mut self.node.ctx.outbox);
        self.schedule_link(i, next, now);
    }
}
