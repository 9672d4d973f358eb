//! `[collection] vector_encoding = "auto"`'s check: whether the server stores a vector sent
//! packed (base64 of little-endian float32s) as exactly the `f32`s that were packed.
//!
//! Owns: one sync upsert of one row whose vector goes packed, one fetch of that row
//! (`fetch_in_collection`), the bit-for-bit comparison of what the server holds with what was
//! sent, and the same row sent as numbers when the packed one was refused or may be held wrong.
//! Never: picks the row (the pipeline picks one that nothing earlier in the run touches), decides
//! the run's encoding (the pipeline does, from the verdict), counts the row as applied (the run
//! sends it again, in its place), or lets a failure stop the run (a check that cannot finish
//! means arrays).

use std::sync::atomic::Ordering::Relaxed;

use backon::Retryable;
use vikingdb_types::sign;

use super::api;
use super::send::{AttemptError, Sender, Sent};
use crate::config::ApiVersion;
use crate::record::{Op, PrimaryKey, Record};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackedCheck {
    /// The server holds exactly the `f32`s sent packed.
    Exact,
    /// The server took the packed vector but holds other values (a byte order or a precision
    /// other than the one sent).
    Differs(String),
    /// The server refused the packed vector (and took the same row as numbers).
    Refused(String),
    /// The server's answers cannot tell (the fetched row has no vector, or gives it as text).
    Unknown(String),
    /// The check could not finish (the network, throttling past the retry policy, credentials, a
    /// row refused whatever its vector's form): nothing is learned, and a later pass may check
    /// again.
    Failed(String),
}

impl PackedCheck {
    /// Whether the verdict holds for the process (every verdict but [`PackedCheck::Failed`]).
    pub fn settles(&self) -> bool {
        !matches!(self, PackedCheck::Failed(_))
    }
}

impl std::fmt::Display for PackedCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackedCheck::Exact => f.write_str("the server stored a packed vector exactly"),
            PackedCheck::Differs(why) => write!(f, "the server stored a packed vector as other values: {why}"),
            PackedCheck::Refused(why) => write!(f, "the server refused a packed vector: {why}"),
            PackedCheck::Unknown(why) => write!(f, "the server's answers cannot tell: {why}"),
            PackedCheck::Failed(why) => write!(f, "the check could not finish: {why}"),
        }
    }
}

impl Sender {
    /// Upserts `packed` (whose vector field `field` goes packed, holding `values`) synchronously,
    /// fetches it back and compares. `arrays` is the same row as the run sends it unpacked: sent
    /// when the packed row is refused (was it the vector, or something else in the row?), and
    /// sent at once when the server may hold other values, so that a wrong guess lasts no longer
    /// than the check (the run sends the row again in its place too). The writes obey the rate
    /// controller and the retry policy as any sync write; the fetch retries what is retryable
    /// under the same policy.
    pub async fn check_packed(&self, packed: &Record, arrays: &Record, field: &str, values: &[f32]) -> PackedCheck {
        if self.target().api != ApiVersion::V2 || packed.op != Op::Upsert {
            return PackedCheck::Unknown("only V2 upserts take packed vectors".into());
        }
        match self.write_now(packed).await {
            Ok(Sent::Applied) => {}
            Ok(Sent::Refused(packed_refused)) => {
                return match self.write_now(arrays).await {
                    Ok(Sent::Applied) => PackedCheck::Refused(packed_refused.to_string()),
                    Ok(Sent::Refused(e)) => PackedCheck::Failed(format!(
                        "the row was refused both packed ({packed_refused}) and as numbers ({e}), so it tells nothing"
                    )),
                    Ok(Sent::TooLarge) => PackedCheck::Failed("throttled".into()),
                    Err(e) => PackedCheck::Failed(e.to_string()),
                };
            }
            Ok(Sent::TooLarge) => return PackedCheck::Failed("throttled".into()),
            Err(e) => return PackedCheck::Failed(e.to_string()),
        }
        let verdict = match self.fetch_one(&packed.key).await {
            Ok(Ok(bytes)) => compare(&bytes, &packed.key, field, values),
            Ok(Err(refused)) => PackedCheck::Unknown(format!("the fetch was refused: {refused}")),
            Err(AttemptError::Fatal(message, _)) => PackedCheck::Unknown(format!("the fetch was refused: {message}")),
            Err(e) => PackedCheck::Failed(format!("the fetch failed: {}", e.wire())),
        };
        if verdict != PackedCheck::Exact {
            match self.write_now(arrays).await {
                Ok(Sent::Applied) => {}
                Ok(Sent::Refused(e)) => {
                    tracing::warn!(error = %e, "the checked row, sent again as numbers, was refused; the run's own send of it says what happens");
                }
                Ok(Sent::TooLarge) => tracing::warn!(
                    "the checked row, sent again as numbers, was throttled; the run sends it in its place"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "the checked row could not be sent again as numbers; the run sends it in its place");
                }
            }
        }
        verdict
    }

    /// One sync upsert of `record`, with retries.
    async fn write_now(&self, record: &Record) -> Result<Sent, super::send::SendError> {
        self.send_with_retry(Op::Upsert, record.ttl, std::slice::from_ref(record), false)
            .await
    }

    /// `fetch_in_collection` of one key: the answer's body, or the server's refusal in words;
    /// retryable failures retried under the retry policy (each retry counted).
    async fn fetch_one(&self, key: &PrimaryKey) -> Result<Result<Vec<u8>, String>, AttemptError> {
        let body = api::fetch_body(&self.target().locator, key);
        let hash = sign::sha256_hex(&body);
        (|| async {
            self.stats().requests.fetch_add(1, Relaxed);
            let answer = self.round_trip(api::FETCH_PATH, body.clone(), &hash).await;
            self.stats()
                .observe_request(answer.as_ref().map_or(0, |a| a.reply().status), None);
            let answer = answer?;
            match self.classify(&answer.reply())? {
                Sent::Applied => Ok(Ok(answer.bytes)),
                Sent::Refused(e) => Ok(Err(e.to_string())),
                Sent::TooLarge => Ok(Err("throttled".to_string())),
            }
        })
        .retry(self.backoff().with_jitter())
        .when(|e| !matches!(e, AttemptError::Fatal(..)))
        .notify(|_, _| {
            self.stats().retries.fetch_add(1, Relaxed);
        })
        .await
    }
}

/// Compares a fetch answer's row `key`, field `field`, with the `f32`s sent.
fn compare(body: &[u8], key: &PrimaryKey, field: &str, sent: &[f32]) -> PackedCheck {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return PackedCheck::Unknown("the fetch answer is not JSON".into());
    };
    let Some(rows) = answer.pointer("/result/fetch").and_then(|f| f.as_array()) else {
        return PackedCheck::Unknown("the fetch answer has no `result.fetch` list".into());
    };
    let want = key.to_json();
    let row = rows
        .iter()
        .find(|r| r.get("id") == Some(&want) || r.get("id").and_then(|i| i.as_str()) == Some(&want.to_string()));
    let Some(row) = row.or(rows.first().filter(|_| rows.len() == 1)) else {
        return PackedCheck::Unknown(format!("the row {want} was not found right after a sync upsert"));
    };
    let held = match row.get("fields").and_then(|f| f.get(field)) {
        Some(serde_json::Value::Array(items)) => items,
        Some(serde_json::Value::String(_)) => {
            return PackedCheck::Unknown(format!("the fetched `{field}` is text, not numbers"));
        }
        Some(other) => return PackedCheck::Unknown(format!("the fetched `{field}` is not an array: {other}")),
        None => return PackedCheck::Unknown(format!("the fetched row has no `{field}`")),
    };
    if held.len() != sent.len() {
        return PackedCheck::Differs(format!(
            "{} elements sent, {} held (row {want})",
            sent.len(),
            held.len()
        ));
    }
    for (i, (h, s)) in held.iter().zip(sent).enumerate() {
        match h.as_f64() {
            Some(x) if (x as f32).to_bits() == s.to_bits() => {}
            Some(x) => {
                return PackedCheck::Differs(format!("element {i} of row {want}: sent {s:?}, the server holds {x}"));
            }
            None => return PackedCheck::Differs(format!("element {i} of row {want} is held as {h}, not a number")),
        }
    }
    PackedCheck::Exact
}

#[cfg(test)]
mod tests {
    use super::{PackedCheck, compare};
    use crate::record::PrimaryKey;

    fn answer(fields: &str) -> Vec<u8> {
        format!(r#"{{"code":"Success","result":{{"fetch":[{{"id":"k1","fields":{fields}}}],"ids_not_exist":[]}}}}"#)
            .into_bytes()
    }

    #[test]
    fn a_vector_held_bit_for_bit_is_exact() {
        let sent = [0.1f32, -2.5, 3.4028235e38];
        let key = PrimaryKey::Str("k1".into());
        // serde_json writes the f32s widened to f64: still the same f32 read back.
        let held = serde_json::to_string(&sent.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()).expect("json");
        assert_eq!(
            compare(&answer(&format!(r#"{{"v":{held}}}"#)), &key, "v", &sent),
            PackedCheck::Exact
        );
        assert_eq!(
            compare(&answer(r#"{"v":[0.1,-2.5,3.4028235e38]}"#), &key, "v", &sent),
            PackedCheck::Exact
        );
    }

    #[test]
    fn other_values_text_or_nothing_are_not_exact() {
        let sent = [0.1f32, -2.5];
        let key = PrimaryKey::Str("k1".into());
        let got = |fields: &str| compare(&answer(fields), &key, "v", &sent);
        assert!(matches!(got(r#"{"v":[0.1,-2.4]}"#), PackedCheck::Differs(m) if m.contains("element 1")));
        assert!(matches!(got(r#"{"v":[0.1]}"#), PackedCheck::Differs(_)));
        assert!(matches!(got(r#"{"v":[0.1,"x"]}"#), PackedCheck::Differs(_)));
        assert!(matches!(got(r#"{"v":"zczMPQAAIMA="}"#), PackedCheck::Unknown(m) if m.contains("text")));
        assert!(matches!(got(r#"{"w":[0.1,-2.5]}"#), PackedCheck::Unknown(m) if m.contains("no `v`")));
        let missing = br#"{"code":"Success","result":{"fetch":[],"ids_not_exist":["k1"]}}"#;
        assert!(matches!(compare(missing, &key, "v", &sent), PackedCheck::Unknown(m) if m.contains("not found")));
        assert!(matches!(compare(b"<html>", &key, "v", &sent), PackedCheck::Unknown(_)));
        assert!(!PackedCheck::Failed("x".into()).settles());
        assert!(PackedCheck::Differs("x".into()).settles());
    }
}
