//! Pacing of generated output: a [`Plan`] says when each token is due (latency to the first,
//! then one every `1 / tokens_per_second`), and [`paced_body`] turns tokens into a streamed
//! HTTP body that follows it while holding the request's [`Slot`].

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::state::{Knobs, Slot};

/// Stand-in for instants too far ahead to represent.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When the tokens of one answer are due.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    start: Instant,
    latency: Duration,
    per_token: Duration,
}

impl Plan {
    /// A plan starting now with the current knobs.
    pub fn new(knobs: &Knobs) -> Plan {
        Plan {
            start: Instant::now(),
            latency: knobs.latency,
            per_token: knobs.per_token(),
        }
    }

    /// When token `i` (0-based) is sent; `at(n)` for `n` tokens is when the answer is done.
    pub fn at(&self, i: usize) -> Instant {
        let offset = self.latency.saturating_add(self.eval_duration(i));
        // Absurd knobs (a rate near zero, a latency of centuries) mean "practically never".
        self.start
            .checked_add(offset)
            .unwrap_or_else(|| self.start + FAR_FUTURE)
    }

    /// Waits until `n` tokens are done (the non-streaming answer time).
    pub async fn finish(&self, n: usize) {
        tokio::time::sleep_until(self.at(n)).await;
    }

    /// Time to the first token.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Time spent producing `n` tokens.
    pub fn eval_duration(&self, n: usize) -> Duration {
        self.per_token
            .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

/// One piece of a streamed answer, to be rendered in the endpoint's wire format.
#[derive(Debug)]
pub enum Step<'a> {
    /// The next token.
    Token(&'a str),
    /// After the last token: the closing line(s).
    Done,
}

struct Paced<R> {
    tokens: Vec<String>,
    next: usize,
    plan: Plan,
    slot: Option<Slot>,
    render: R,
}

/// A body that sends `render(Token(t))` for each token at its planned time, then
/// `render(Done)`, and releases `slot` once done (or when the client goes away).
pub fn paced_body<R>(tokens: Vec<String>, plan: Plan, slot: Slot, render: R) -> Body
where
    R: FnMut(Step<'_>) -> String + Send + 'static,
{
    let state = Paced {
        tokens,
        next: 0,
        plan,
        slot: Some(slot),
        render,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        st.slot.as_ref()?;
        let i = st.next;
        tokio::time::sleep_until(st.plan.at(i)).await;
        let chunk = match st.tokens.get(i) {
            Some(token) => (st.render)(Step::Token(token)),
            None => {
                st.slot = None;
                (st.render)(Step::Done)
            }
        };
        st.next += 1;
        Some((Bytes::from(chunk), st))
    });
    Body::from_stream(stream.map(Ok::<_, Infallible>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spaces_tokens_and_survives_absurd_knobs() {
        let knobs = Knobs {
            latency: Duration::from_millis(10),
            tokens_per_second: 100.0,
            error_rate: 0.0,
        };
        let plan = Plan::new(&knobs);
        assert_eq!(plan.at(3) - plan.at(0), Duration::from_millis(30));
        assert_eq!(plan.eval_duration(2), Duration::from_millis(20));
        let slow = Plan::new(&Knobs {
            latency: Duration::MAX,
            tokens_per_second: 1e-300,
            error_rate: 0.0,
        });
        assert!(slow.at(5) > Instant::now());
    }
}
