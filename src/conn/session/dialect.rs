//! Extension headers of other brokers' STOMP (ActiveMQ, Artemis, RabbitMQ) that change what a
//! frame means: the ones romp does not provide are refused with ERROR `unsupported` rather than
//! ignored, so a client never believes it got a behaviour it did not. docs/protocol.md has the
//! full table, including the headers romp honours and the hints it ignores.
//!
//! Runs on the connection's worker, once per SEND or SUBSCRIBE: one pass over the frame's
//! headers with a `match` on the name, nothing allocated unless a frame is refused.

use super::*;

/// A SEND's schedule: (deliver at, ms since the epoch; period, ms; repeats), all 0 when it has
/// none.
pub(super) type Schedule = (u64, u64, u32);

/// How far ahead a message may be scheduled.
pub const MAX_SCHEDULE_AHEAD_MS: u64 = 366 * 86_400_000;
/// The most repeats one scheduled SEND may ask for.
pub const MAX_SCHEDULE_REPEAT: u64 = 1_000_000;

/// Check a SEND's extension headers in one pass and read its schedule: refuse what romp does
/// not do (cron schedules, a routing type against the name), malformed values (`syntax`), and
/// ids or priorities out of range. ActiveMQ's `AMQ_SCHEDULED_DELAY` (and Artemis'
/// `_AMQ_SCHEDULED_DELAY`) wait so many ms, Artemis' `AMQ_SCHEDULED_TIME` names the time;
/// ActiveMQ's `AMQ_SCHEDULED_PERIOD` and `AMQ_SCHEDULED_REPEAT` deliver it again `repeat` more
/// times, `period` ms apart. The first occurrence of a header counts (C1).
pub(super) fn check_send(f: &Frame<'_>, dest: &str, now_ms: u64) -> Result<Schedule, Fatal> {
    let (mut delay, mut alt_delay, mut time, mut period, mut repeat) = (None, None, None, None, None);
    let first = |slot: &mut Option<Option<u64>>, name: &str, v: &str| -> Result<(), Fatal> {
        if slot.is_none() {
            *slot = Some(match v {
                "" => None,
                v => Some(
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| Fatal::new(ErrorWord::Syntax, format!("{name} {v:?} is not a number of milliseconds")))?,
                ),
            });
        }
        Ok(())
    };
    for h in f.headers.iter() {
        let (name, v) = (h.name.as_ref(), h.value.as_ref());
        match name {
            "AMQ_SCHEDULED_DELAY" => first(&mut delay, name, v)?,
            "_AMQ_SCHEDULED_DELAY" => first(&mut alt_delay, name, v)?,
            "AMQ_SCHEDULED_TIME" => first(&mut time, name, v)?,
            "AMQ_SCHEDULED_PERIOD" => first(&mut period, name, v)?,
            "AMQ_SCHEDULED_REPEAT" => first(&mut repeat, name, v)?,
            "AMQ_SCHEDULED_CRON" if !v.is_empty() => {
                return Err(Fatal::new(
                    ErrorWord::Unsupported,
                    "AMQ_SCHEDULED_CRON: cron schedules are not supported; use AMQ_SCHEDULED_DELAY with AMQ_SCHEDULED_PERIOD and AMQ_SCHEDULED_REPEAT",
                ))
            }
            "destination-type" => {
                if let Some(why) = kind_mismatch(v, dest) {
                    return Err(Fatal::new(ErrorWord::Unsupported, format!("destination-type: {why}")));
                }
            }
            "priority" if !v.is_empty() && v.trim().parse::<u8>().is_err() => {
                return Err(Fatal::new(ErrorWord::Syntax, format!("priority {v:?} is not a number from 0 to 9")));
            }
            "dedup-id" | "_AMQ_DUPL_ID" if v.len() > crate::broker::shard::MAX_DEDUP_ID => {
                return Err(Fatal::new(ErrorWord::Syntax, format!("{name} is at most {} bytes", crate::broker::shard::MAX_DEDUP_ID)));
            }
            _ => {}
        }
    }
    let delay = delay.flatten().or(alt_delay.flatten());
    let (time, period, repeat) = (time.flatten(), period.flatten().unwrap_or(0), repeat.flatten().unwrap_or(0));
    if repeat > MAX_SCHEDULE_REPEAT {
        return Err(Fatal::new(ErrorWord::Syntax, format!("AMQ_SCHEDULED_REPEAT is at most {MAX_SCHEDULE_REPEAT}")));
    }
    if repeat > 0 && period == 0 {
        return Err(Fatal::new(ErrorWord::Syntax, "AMQ_SCHEDULED_REPEAT needs an AMQ_SCHEDULED_PERIOD of at least 1 ms"));
    }
    if delay.is_none() && time.is_none() && repeat == 0 {
        return Ok((0, 0, 0));
    }
    let at = time.unwrap_or_else(|| now_ms.saturating_add(delay.unwrap_or(0))).max(1);
    if at > now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS) {
        return Err(Fatal::new(ErrorWord::Syntax, "a message may be scheduled at most 366 days ahead"));
    }
    Ok((at, period, repeat as u32))
}

/// A queue consumer's priority (ActiveMQ's `activemq.priority`, RabbitMQ's `x-priority`;
/// higher first, 0 by default) and exclusivity (`activemq.exclusive:true`, RabbitMQ's
/// `x-single-active-consumer:true`). On a topic they mean nothing and are refused.
pub(super) fn consumer_dialect(f: &Frame<'_>, dest: &str) -> Result<(i32, bool), Fatal> {
    let raw = f.header("activemq.priority").map(|v| ("activemq.priority", v)).or_else(|| f.header("x-priority").map(|v| ("x-priority", v)));
    let priority = match raw {
        None | Some((_, "")) => 0,
        Some((name, v)) => match v.trim().parse::<i32>() {
            Ok(p) if (-1000..=1000).contains(&p) => p,
            _ => return Err(Fatal::new(ErrorWord::Syntax, format!("{name} {v:?} is not an integer from -1000 to 1000"))),
        },
    };
    let exclusive = f.header("activemq.exclusive") == Some("true") || f.header("x-single-active-consumer") == Some("true");
    if (priority != 0 || exclusive) && DestKind::of(dest) == DestKind::Topic {
        return Err(Fatal::new(ErrorWord::Unsupported, format!("{dest}: consumer priority and exclusive consumers apply to queues")));
    }
    Ok((priority, exclusive))
}

/// Refuse a SUBSCRIBE whose headers ask for what romp does not do.
pub(super) fn check_subscribe(f: &Frame<'_>, dest: &str) -> Res {
    for h in f.headers.iter() {
        let v = h.value.as_ref();
        let refusal = match h.name.as_ref() {
            "activemq.noLocal" | "no-local" if v == "true" => Some("no-local subscriptions are not supported"),
            "activemq.retroactive" if v == "true" => Some("retroactive consumers are not supported (a topic's min_delivery keeps messages for later subscribers)"),
            "x-queue-type" if !matches!(v, "classic" | "quorum") => {
                Some("only classic and quorum queue semantics are provided (romp queues are durable and ordered); streams are not supported")
            }
            "x-stream-offset" => Some("streams are not supported"),
            "x-max-length" | "x-max-length-bytes" | "x-overflow" => Some("queue bounds are set in the broker's configuration ([destinations] max_messages, max_queue_bytes, overflow), not per subscription"),
            "x-message-ttl" | "x-expires" => Some("message and queue lifetimes are set in the broker's configuration ([destinations] expiry) or per message (expires)"),
            "x-dead-letter-exchange" | "x-dead-letter-routing-key" => Some("dead-letter destinations are set in the broker's configuration ([destinations] dead_letter)"),
            "subscription-type" => kind_mismatch(v, dest),
            _ => None,
        };
        if let Some(why) = refusal {
            return Err(Fatal::new(ErrorWord::Unsupported, format!("{}: {why}", h.name)));
        }
    }
    rabbit_destination(dest)
}

/// Artemis' routing types against romp's naming rule (`/queue/` is anycast, everything else
/// multicast).
fn kind_mismatch(routing: &str, dest: &str) -> Option<&'static str> {
    match (routing, DestKind::of(dest)) {
        ("ANYCAST", DestKind::Topic) => Some("ANYCAST routing needs a /queue/ destination (every other name is a topic)"),
        ("MULTICAST", DestKind::Queue) => Some("MULTICAST routing needs a topic (a /queue/ name is anycast)"),
        ("ANYCAST" | "MULTICAST", _) => None,
        _ => Some("the routing type is ANYCAST or MULTICAST"),
    }
}

/// RabbitMQ's exchange and AMQP-queue destinations mean routing romp does not do; they are not
/// taken as topic names.
pub(super) fn rabbit_destination(dest: &str) -> Res {
    for prefix in ["/exchange/", "/amq/queue/", "/reply-queue/"] {
        if dest.starts_with(prefix) {
            return Err(Fatal::new(
                ErrorWord::Unsupported,
                format!("{dest}: RabbitMQ's {prefix} destinations are not supported; use /topic/NAME or /queue/NAME"),
            ));
        }
    }
    Ok(())
}
