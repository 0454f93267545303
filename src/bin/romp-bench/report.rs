//! Counting what arrived, and the end-of-run report (human table or JSON).

use crate::{Kind, Opts};
use hdrhistogram::Histogram;

/// What one thread saw. Merged across threads at the end.
pub struct Tally {
    /// Messages sent per producer (its next sequence number).
    pub sent: Vec<u64>,
    /// Per producer, per sequence: copies received.
    pub seen: Vec<Vec<u16>>,
    /// Per (consumer, producer): the last sequence seen + 1 (0 = none yet), for reorder
    /// detection; indexed `consumer * producers + producer` (no hashing per message).
    last: Vec<u64>,
    pub reordered: u64,
    pub corrupt: u64,
    pub errors: u64,
    /// Open loop: lateness against the intended send time, in ns.
    pub latency: Option<Histogram<u64>>,
    /// Messages slow consumers read, and slow consumers the broker cut off.
    pub slow_delivered: u64,
    pub slow_cut_off: u64,
    /// `--receipt-window`: SEND-to-RECEIPT round trips, in ns.
    pub receipts: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            sent: Vec::new(),
            seen: Vec::new(),
            last: Vec::new(),
            reordered: 0,
            corrupt: 0,
            errors: 0,
            latency: None,
            slow_delivered: 0,
            slow_cut_off: 0,
            receipts: latency_histogram(),
        }
    }
}

/// A histogram of nanoseconds up to a minute, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

impl Tally {
    pub fn new(producers: usize) -> Tally {
        Tally { sent: vec![0; producers], seen: vec![Vec::new(); producers], ..Tally::default() }
    }

    pub fn record(&mut self, consumer: usize, pid: u32, seq: u64) {
        let Some(v) = self.seen.get_mut(pid as usize) else {
            self.corrupt += 1;
            return;
        };
        let i = seq as usize;
        if v.len() <= i {
            v.resize((i + 1).next_power_of_two(), 0);
        }
        v[i] = v[i].saturating_add(1);
        let producers = self.seen.len();
        let i = consumer * producers + pid as usize;
        if self.last.len() <= i {
            self.last.resize(i + 1, 0);
        }
        let last = &mut self.last[i];
        if *last != 0 && seq < *last {
            self.reordered += 1;
        }
        *last = seq + 1;
    }

    pub fn merge(&mut self, other: Tally) {
        if self.sent.len() < other.sent.len() {
            self.sent.resize(other.sent.len(), 0);
            self.seen.resize(other.seen.len(), Vec::new());
        }
        for (i, s) in other.sent.into_iter().enumerate() {
            self.sent[i] = self.sent[i].max(s);
        }
        for (i, v) in other.seen.into_iter().enumerate() {
            let mine = &mut self.seen[i];
            if mine.len() < v.len() {
                mine.resize(v.len(), 0);
            }
            for (j, n) in v.into_iter().enumerate() {
                mine[j] = mine[j].saturating_add(n);
            }
        }
        self.reordered += other.reordered;
        self.corrupt += other.corrupt;
        self.errors += other.errors;
        self.slow_delivered += other.slow_delivered;
        self.slow_cut_off += other.slow_cut_off;
        let _ = self.receipts.add(&other.receipts);
        if let Some(h) = other.latency {
            match self.latency.as_mut() {
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => self.latency = Some(h),
            }
        }
    }
}

pub struct Report {
    scenario: String,
    sent: u64,
    delivered: u64,
    lost: u64,
    /// Of `lost`: messages of the unwindowed burst (`--burst`), and how many the burst sent.
    burst_lost: u64,
    burst_sent: u64,
    duplicated: u64,
    reordered: u64,
    corrupt: u64,
    errors: u64,
    send_rate: f64,
    delivery_rate: f64,
    seconds: f64,
    /// Open loop: (p50, p99, p99.9, max) lateness in microseconds.
    latency_us: Option<[f64; 4]>,
    slow: Option<(usize, u64, u64)>,
    /// The broker's peak RSS during the run (`--broker-pid`).
    pub broker_rss_kib: Option<u64>,
    /// `--receipt-window`: (receipts, p50, p99) of the SEND-to-RECEIPT round trip in us.
    receipts: Option<(u64, f64, f64)>,
}

impl Report {
    pub fn new(o: &Opts, t: &Tally, send_rate: f64, delivery_rate: f64, seconds: f64) -> Report {
        let (mut lost, mut dup, mut delivered, mut burst_lost, mut burst_sent) = (0, 0, 0, 0, 0);
        for (pid, &sent) in t.sent.iter().enumerate() {
            let copies = o.copies_of(pid % o.destinations);
            let seen = &t.seen[pid];
            burst_sent += sent.min(o.burst);
            for seq in 0..sent as usize {
                let n = seen.get(seq).copied().unwrap_or(0) as u64;
                delivered += n;
                let missing = copies.saturating_sub(n);
                lost += missing;
                if (seq as u64) < o.burst {
                    burst_lost += missing;
                }
                dup += n.saturating_sub(copies);
            }
        }
        let kind = if o.kind == Kind::Queue { "queue" } else { "topic" };
        let latency_us = t.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
            [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.value_at_quantile(0.999), h.max()].map(|ns| ns as f64 / 1000.0)
        });
        let mut extra = String::new();
        if let Some(r) = o.rate {
            extra.push_str(&format!(", open loop at {r:.0} msg/s"));
        }
        if o.slow > 0 {
            extra.push_str(&format!(", + {} slow subscriber(s) at {} msg/s", o.slow, o.slow_rate));
        }
        Report {
            scenario: format!(
                "{kind} {}->{} over {} destination(s), {} B{}, ack {}{extra}",
                o.producers,
                o.consumers,
                o.destinations,
                o.size,
                if o.persistent { " persistent" } else { "" },
                o.ack.as_str()
            ),
            sent: t.sent.iter().sum(),
            delivered,
            lost,
            burst_lost,
            burst_sent,
            duplicated: dup,
            reordered: t.reordered,
            corrupt: t.corrupt,
            errors: t.errors,
            send_rate,
            delivery_rate,
            seconds,
            latency_us,
            slow: (o.slow > 0).then_some((o.slow, t.slow_delivered, t.slow_cut_off)),
            broker_rss_kib: None,
            receipts: (o.receipt_window > 0).then(|| {
                let h = &t.receipts;
                (h.len(), h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
            }),
        }
    }

    /// Nothing lost, duplicated, reordered or corrupted, and no errors.
    pub fn clean(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.corrupt + self.errors == 0
    }

    pub fn print(&self, json: bool) {
        if json {
            let mut extra = String::new();
            if let Some([p50, p99, p999, max]) = self.latency_us {
                extra.push_str(&format!(",\"latency_us\":{{\"p50\":{p50:.1},\"p99\":{p99:.1},\"p999\":{p999:.1},\"max\":{max:.1}}}"));
            }
            if let Some((n, got, cut)) = self.slow {
                extra.push_str(&format!(",\"slow\":{{\"subscribers\":{n},\"delivered\":{got},\"cut_off\":{cut}}}"));
            }
            if let Some(kib) = self.broker_rss_kib {
                extra.push_str(&format!(",\"broker_rss_kib\":{kib}"));
            }
            if let Some((n, p50, p99)) = self.receipts {
                extra.push_str(&format!(",\"receipts\":{{\"count\":{n},\"p50_us\":{p50:.1},\"p99_us\":{p99:.1}}}"));
            }
            println!(
                "{{\"scenario\":\"{}\",\"seconds\":{:.3},\"sent\":{},\"delivered\":{},\"lost\":{},\"burst_sent\":{},\"burst_lost\":{},\"duplicated\":{},\"reordered\":{},\"corrupt\":{},\"errors\":{},\"send_rate\":{:.0},\"delivery_rate\":{:.0}{extra}}}",
                self.scenario, self.seconds, self.sent, self.delivered, self.lost, self.burst_sent, self.burst_lost, self.duplicated, self.reordered, self.corrupt, self.errors, self.send_rate, self.delivery_rate
            );
            return;
        }
        println!("scenario     {}", self.scenario);
        println!("measured     {:.1} s (after warm-up)", self.seconds);
        println!("send rate    {:>12.0} msg/s", self.send_rate);
        println!("deliveries   {:>12.0} msg/s", self.delivery_rate);
        println!("sent         {:>12}", self.sent);
        println!("delivered    {:>12}", self.delivered);
        println!("lost         {:>12}", self.lost);
        if self.burst_sent > 0 {
            println!("  in burst   {:>12} of {} pipelined without a window", self.burst_lost, self.burst_sent);
        }
        println!("duplicated   {:>12}", self.duplicated);
        println!("reordered    {:>12}", self.reordered);
        println!("corrupt      {:>12}", self.corrupt);
        println!("errors       {:>12}", self.errors);
        if let Some([p50, p99, p999, max]) = self.latency_us {
            println!("lateness     p50 {p50:.0} us  p99 {p99:.0} us  p99.9 {p999:.0} us  max {max:.0} us (from intended send time)");
        }
        if let Some((n, got, cut)) = self.slow {
            println!("slow subs    {n}: read {got} messages, {cut} cut off by the broker");
        }
        if let Some(kib) = self.broker_rss_kib {
            println!("broker RSS   {kib} KiB at most");
        }
        if let Some((n, p50, p99)) = self.receipts {
            println!("receipts     {n}: SEND to RECEIPT p50 {p50:.0} us  p99 {p99:.0} us");
        }
        println!("verdict      {}", if self.clean() { "CLEAN" } else { "FAILED: messages lost, duplicated, reordered or corrupted" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_loss_duplicates_and_reordering() {
        let mut t = Tally::new(2);
        t.sent = vec![5, 3];
        for s in [0, 1, 3, 3, 4] {
            t.record(0, 0, s); // producer 0: 2 missing, 3 twice
        }
        for s in [0, 2, 1] {
            t.record(1, 1, s); // producer 1: 1 arrives after 2
        }
        assert_eq!(t.reordered, 2, "the repeated 3 and the late 1");
        let mut merged = Tally::new(2);
        merged.merge(t);
        let o = crate::Opts::for_tests();
        let r = Report::new(&o, &merged, 0.0, 0.0, 1.0);
        assert_eq!((r.lost, r.duplicated, r.reordered), (1, 1, 2));
        assert!(!r.clean());
    }
}
