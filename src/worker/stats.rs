//! Numbers for the console pages, gathered over the bus: a web connection asks every worker
//! (`ToOwner::Stats`), each answers with a [`WorkerSnapshot`] of its own connections and shard,
//! and the asking worker renders JSON when all have answered. No shared locks, no blocking.

use crate::broker::shard::{DestInfo, ShardStats};
use crate::conn::ctx::WorkerStats;
use crate::conn::Ctx;
use serde::Serialize;

/// Destinations listed per worker at most (the page says when it was cut).
pub const MAX_LISTED: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct WorkerSnapshot {
    pub worker: usize,
    pub connections: usize,
    pub stats: WorkerStats,
    pub shard: ShardStats,
    pub destinations: Vec<DestInfo>,
    pub truncated: bool,
}

/// The JSON body for a console path, from every worker's snapshot.
pub fn render(path: &str, parts: &[WorkerSnapshot], ctx: &Ctx) -> String {
    let mut parts: Vec<&WorkerSnapshot> = parts.iter().collect();
    parts.sort_by_key(|p| p.worker);
    let v = if path == "/romp/destinations" {
        let mut dests: Vec<&DestInfo> = parts.iter().flat_map(|p| p.destinations.iter()).collect();
        dests.sort_by(|a, b| a.name.cmp(&b.name));
        serde_json::json!({
            "destinations": dests,
            "truncated": parts.iter().any(|p| p.truncated),
        })
    } else {
        let total = |f: &dyn Fn(&WorkerSnapshot) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
        serde_json::json!({
            "server": ctx.server_header,
            "uptime_seconds": ctx.started.elapsed().as_secs(),
            "workers": parts.len(),
            "connections": total(&|p| p.connections as u64),
            "connections_per_worker": parts.iter().map(|p| p.connections).collect::<Vec<_>>(),
            "destinations": total(&|p| p.destinations.len() as u64),
            "messages_in": total(&|p| p.stats.messages_in),
            "messages_out": total(&|p| p.stats.messages_out),
            "dropped_slow": total(&|p| p.stats.dropped_slow),
            "rejected": total(&|p| p.shard.rejected),
            "per_worker": parts,
        })
    };
    let mut s = v.to_string();
    s.push('\n');
    s
}
