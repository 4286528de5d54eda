//! The fault queue both fakes script: queued faults are consumed in order, each by exactly one
//! matching request; persistent faults apply while no queued fault does, until cleared.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;

use super::server::{Reply, Resp};

/// Faults `F` aimed at targets `M`. Each fake adds its own `take` (how a request matches).
#[derive(Debug)]
pub(crate) struct FaultQueue<M, F> {
    pub(crate) queue: VecDeque<(M, F)>,
    pub(crate) persistent: Vec<(M, F)>,
}

impl<M, F> Default for FaultQueue<M, F> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            persistent: Vec::new(),
        }
    }
}

impl<M: PartialEq, F> FaultQueue<M, F> {
    pub(crate) fn push(&mut self, target: M, fault: F) {
        self.queue.push_back((target, fault));
    }

    pub(crate) fn set_persistent(&mut self, target: M, fault: F) {
        self.persistent.retain(|(m, _)| *m != target);
        self.persistent.push((target, fault));
    }

    pub(crate) fn clear_persistent(&mut self, target: &M) -> bool {
        let before = self.persistent.len();
        self.persistent.retain(|(m, _)| m != target);
        before != self.persistent.len()
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.persistent.clear();
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Removes and returns the oldest queued fault whose target satisfies `matches`.
    pub(crate) fn take_queued(&mut self, matches: impl Fn(&M) -> bool) -> Option<F> {
        let pos = self.queue.iter().position(|(m, _)| matches(m))?;
        self.queue.remove(pos).map(|(_, f)| f)
    }
}

/// What a scripted fault does first.
pub(crate) enum FaultStep<F> {
    /// Wait this long, then apply the next fault (`None`: answer normally).
    Sleep(Duration, Option<F>),
    /// Never answer.
    Hang,
    /// Drop the connection without a response.
    Reset,
    /// Answer verbatim.
    Custom {
        status: StatusCode,
        content_type: Option<String>,
        body: Bytes,
    },
    /// Answer with the fault's own response.
    Answer(F),
}

/// A fake's fault type: knows which of its variants delay, hang or reset.
pub(crate) trait ScriptedFault: Sized {
    fn step(self) -> FaultStep<Self>;
}

/// Implements [`ScriptedFault`] for a fault enum with `Delay(Duration)`,
/// `DelayThen(Duration, Box<Self>)`, `Hang`, `Reset` and
/// `Custom { status: u16, content_type: Option<String>, body: String }` variants.
macro_rules! impl_scripted_fault {
    ($fault:ty) => {
        impl $crate::fake_support::script::ScriptedFault for $fault {
            fn step(self) -> $crate::fake_support::script::FaultStep<Self> {
                use $crate::fake_support::script::FaultStep;
                match self {
                    Self::Delay(d) => FaultStep::Sleep(d, None),
                    Self::DelayThen(d, next) => FaultStep::Sleep(d, Some(*next)),
                    Self::Hang => FaultStep::Hang,
                    Self::Reset => FaultStep::Reset,
                    Self::Custom {
                        status,
                        content_type,
                        body,
                    } => FaultStep::Custom {
                        status: $crate::fake_support::response::status_code(status),
                        content_type,
                        body: body.into(),
                    },
                    other => FaultStep::Answer(other),
                }
            }
        }
    };
}
pub(crate) use impl_scripted_fault;

/// Plays a request's fault: sleeps through delays, then hangs, resets, answers a custom fault
/// with `custom(status, content_type, body)` and any other with `answer(fault)`, or, with no
/// fault (left), answers `normal`. `answer` only sees faults whose step is
/// [`FaultStep::Answer`].
pub(crate) async fn apply_fault<F: ScriptedFault>(
    mut fault: Option<F>,
    normal: impl Future<Output = Resp>,
    answer: impl FnOnce(F) -> Resp,
    custom: impl FnOnce(StatusCode, Option<&str>, Bytes) -> Resp,
) -> Reply {
    loop {
        let Some(current) = fault.take() else {
            return Reply::Respond(normal.await);
        };
        match current.step() {
            FaultStep::Sleep(d, next) => {
                tokio::time::sleep(d).await;
                fault = next;
            }
            FaultStep::Hang => return Reply::Hang,
            FaultStep::Reset => return Reply::Reset,
            FaultStep::Custom {
                status,
                content_type,
                body,
            } => return Reply::Respond(custom(status, content_type.as_deref(), body)),
            FaultStep::Answer(f) => return Reply::Respond(answer(f)),
        }
    }
}
