//! The callback route's decisions (`POST /actions/callbacks/{callbackId}`) and the retry of a
//! late lookup's completion, as poll steps: the host reads the body and the store, core says
//! what next and what to answer.

use super::execution::{callback_completion, callback_portal};
use super::{ActionSettings, Completion};
use crate::id::PortalId;

/// Standard Webhooks: callbacks further than 5 minutes from now are refused (replays;
/// <https://www.standardwebhooks.com/>, "timestamp tolerance").
const TOLERANCE_SECS: u64 = 300;

/// One callback from the user's system, checked in order: callbacks on
/// (`ACTIONS_CALLBACK_SECRET`), the body's size, its Standard Webhooks signature, its portal,
/// the execution's record, its action still configured, the body fitting the action's outputs;
/// then the store's answer to the completion.
#[derive(Debug)]
pub struct CallbackRoute<'a> {
    settings: &'a ActionSettings,
    callback_id: &'a str,
    body: Option<&'a [u8]>,
}

/// What the host does next for a [`CallbackRoute`].
#[derive(Debug, PartialEq)]
pub enum CallbackStep {
    /// Read the execution's record (its action) from this portal's store, then
    /// [`CallbackRoute::on_record`].
    Load {
        /// The portal.
        portal: PortalId,
    },
    /// Queue this completion in the portal's store, then [`CallbackRoute::on_completed`].
    Complete {
        /// The portal.
        portal: PortalId,
        /// The completion.
        completion: Completion,
    },
    /// Answer with this, nothing more to do.
    Answer(CallbackAnswer),
}

/// The callback's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackAnswer {
    /// 202 `{"callbackId": …, "state": "completing"}`: the completion is queued.
    Accepted,
    /// The host's error body with this status, stable code and message (no values).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The stable code.
        code: String,
        /// The message.
        message: String,
    },
}

fn refused(status: u16, code: &str, message: &str) -> CallbackStep {
    CallbackStep::Answer(refusal(status, code, message))
}

fn refusal(status: u16, code: &str, message: &str) -> CallbackAnswer {
    CallbackAnswer::Refused {
        status,
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

const STORE_UNAVAILABLE: (u16, &str, &str) = (503, "action_store_unavailable", "try again");

impl<'a> CallbackRoute<'a> {
    /// The callback for execution `callback_id`; `body` `None` when it was larger than the
    /// host reads.
    pub fn new(settings: &'a ActionSettings, callback_id: &'a str, body: Option<&'a [u8]>) -> Self {
        Self {
            settings,
            callback_id,
            body,
        }
    }

    /// The first step, with the `webhook-id`, `webhook-timestamp` and `webhook-signature`
    /// headers (empty when absent) at `now_secs`: [`CallbackStep::Load`] or an answer (404
    /// `callbacks_off`, 413, 401 `callback_signature_invalid`, 400 `callback_portal_unknown`).
    pub fn start(&self, headers: [&str; 3], now_secs: u64) -> CallbackStep {
        let Some(secret) = &self.settings.callback_secret else {
            return refused(
                404,
                "callbacks_off",
                "callbacks are off (ACTIONS_CALLBACK_SECRET is unset)",
            );
        };
        let Some(body) = self.body else {
            return refused(413, "callback_body_too_large", "at most 1 MiB");
        };
        let [id, timestamp, signature] = headers;
        if let Err(e) = secret.verify(id, timestamp, signature, body, now_secs, TOLERANCE_SECS) {
            return refused(401, "callback_signature_invalid", &e.to_string());
        }
        match callback_portal(self.callback_id, body) {
            Some(portal) => CallbackStep::Load { portal },
            None => refused(
                400,
                "callback_portal_unknown",
                "send portalId in the body (the callback id does not name it)",
            ),
        }
    }

    /// After [`CallbackStep::Load`]: `Ok` with the record's action (`None`: no such
    /// execution), `Err(())` when the store could not be asked. [`CallbackStep::Complete`] or
    /// an answer (503, 404 `callback_unknown`, 409 `action_unknown`, 400 with the output's
    /// code).
    pub fn on_record(&self, portal: PortalId, action: Result<Option<&str>, ()>) -> CallbackStep {
        let Ok(action) = action else {
            let (status, code, message) = STORE_UNAVAILABLE;
            return refused(status, code, message);
        };
        let Some(action) = action else {
            return refused(404, "callback_unknown", "no execution with this callbackId");
        };
        let Some(definition) = self.settings.definitions.get(action) else {
            return refused(
                409,
                "action_unknown",
                "the execution's action is no longer configured",
            );
        };
        let body = self.body.unwrap_or_default();
        match callback_completion(definition, self.callback_id, body) {
            Ok(completion) => CallbackStep::Complete { portal, completion },
            Err(e) => refused(400, e.code(), &e.to_string()),
        }
    }

    /// After [`CallbackStep::Complete`]: the store's `(status, code)` (202 queued; else 409
    /// `callback_completed` / `callback_running`, 410 `callback_expired`, …), `Err(())` when it
    /// could not be asked (503).
    pub fn on_completed(&self, answer: Result<(u16, &str), ()>) -> CallbackAnswer {
        match answer {
            Ok((202, _)) => CallbackAnswer::Accepted,
            Ok((status, code)) => refusal(status, code, "the execution cannot be completed"),
            Err(()) => {
                let (status, code, message) = STORE_UNAVAILABLE;
                refusal(status, code, message)
            }
        }
    }
}

/// A late lookup's completion sent to the store again while the execution still runs: the
/// `BLOCK` answer is recorded by the request right after the budget, and a reply faster than
/// that record finds it running (409 `callback_running`). Tried at most [`Self::TRIES`] times,
/// [`Self::WAIT_MS`] apart (2 s in all).
#[derive(Debug, Default)]
pub struct LateCompletionRetry {
    tries: u32,
}

impl LateCompletionRetry {
    /// Sends at most.
    pub const TRIES: u32 = 10;
    /// The wait between two sends.
    pub const WAIT_MS: u64 = 200;

    /// After a send the store answered `(status, code)`: `Some(ms)` to wait and send again,
    /// `None` when this answer is final (queued, refused, or still running after the last try).
    pub fn again_after(&mut self, status: u16, code: &str) -> Option<u64> {
        self.tries += 1;
        (status == 409 && code == "callback_running" && self.tries < Self::TRIES)
            .then_some(Self::WAIT_MS)
    }
}
