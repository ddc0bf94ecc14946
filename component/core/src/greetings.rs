//! Greeting records in the key-value store, one JSON value per key `greeting:<id>`, each with
//! its position in the [greeting log](crate::greeting_log), which lists them newest first.
//!
//! A record and its log entry are written together; a record is replaced and a log entry
//! blanked only by compare-and-swap, so concurrent writers on several hosts lose nothing.
//! Records from before the log (no position) are given one by [`backfill`] before the first
//! listing that finds the log not yet backfilled; their positions are below every new one, so
//! creating need not wait for it.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorCode};
use crate::greeting_log;
use crate::ids::GreetingId;
use crate::limits::MESSAGE_MAX_CHARS;
use crate::pagination::PageRequest;
use crate::platform::{KeyValue, Platform};
use crate::timestamp::rfc3339_millis;
use crate::validation::{check_length, check_name};

const KEY_PREFIX: &str = "greeting:";
/// Present once every record written before the log has a position.
const BACKFILLED_KEY: &str = "greeting-log:backfilled";
/// How often a replace or a backfill retries a record that another writer changed meanwhile.
const MAX_SWAP_ATTEMPTS: usize = 16;

/// A stored greeting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Greeting {
    /// A ULID: ids sort by creation time.
    #[schema(example = "01JD3X2K8Q5V7R9T1M4N6P8S0W")]
    pub id: String,
    #[schema(example = "Ada")]
    pub name: String,
    #[schema(example = "Hello, Ada!")]
    pub message: String,
    /// RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime, example = "2025-01-31T09:30:00.123Z")]
    pub created_at: String,
    /// Equal to `created_at` until the greeting is replaced.
    #[schema(format = DateTime, example = "2025-01-31T09:30:00.123Z")]
    pub updated_at: String,
}

/// What a client sends to create or replace a greeting. Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GreetingInput {
    /// Not blank, and without control characters or line separators.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u2028\u2029]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F\u2028\u2029]*$",
        example = "Ada"
    )]
    pub name: String,
    /// Defaults to `Hello, {name}!`.
    #[schema(max_length = 280, example = "Good morning, Ada!")]
    pub message: Option<String>,
}

/// A greeting as stored: the record and its log position (absent in records written before
/// the log, which older versions still read, since they ignore unknown fields).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    greeting: Greeting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
}

/// One page of greetings, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct GreetingPage {
    pub items: Vec<Greeting>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The greeting of `/hello/{name}`, and a greeting's message when none is given.
pub fn default_message(name: &str) -> String {
    format!("Hello, {name}!")
}

impl GreetingInput {
    /// The name and message to store: 422 when the name is not a name ([`check_name`]) or
    /// the message is too long.
    fn into_valid(self) -> Result<(String, String), ApiError> {
        check_name(&self.name, ErrorCode::ValidationFailed)?;
        let message = self.message.unwrap_or_else(|| default_message(&self.name));
        check_length(
            "message",
            &message,
            0..=MESSAGE_MAX_CHARS,
            ErrorCode::ValidationFailed,
        )?;
        Ok((self.name, message))
    }
}

pub async fn create(platform: Platform<'_>, input: GreetingInput) -> Result<Greeting, ApiError> {
    let (name, message) = input.into_valid()?;
    let store = platform.store;
    let now = platform.clock.now_unix_ms();
    let id = GreetingId::new(now, platform.random.random_u128());
    let created_at = rfc3339_millis(now);
    let greeting = Greeting {
        id: id.to_string(),
        name,
        message,
        updated_at: created_at.clone(),
        created_at,
    };
    let position = greeting_log::take_position(store).await?;
    let stored = Stored {
        greeting,
        position: Some(position),
    };
    store
        .set_many(&[
            (key(id), encode(&stored)?),
            greeting_log::entry(position, id),
        ])
        .await?;
    Ok(stored.greeting)
}

/// The greeting `id`; 404 when there is none (including ids that are not ULIDs).
pub async fn find(store: &dyn KeyValue, id: &str) -> Result<Greeting, ApiError> {
    let id = parse_id(id)?;
    Ok(load(store, id)
        .await?
        .ok_or_else(|| not_found(id))?
        .1
        .greeting)
}

/// Replaces the name and message of greeting `id`, keeping its id, `created_at` and position.
/// A swap, so that a greeting deleted meanwhile stays deleted.
pub async fn replace(
    platform: Platform<'_>,
    id: &str,
    input: GreetingInput,
) -> Result<Greeting, ApiError> {
    let (name, message) = input.into_valid()?;
    let id = parse_id(id)?;
    for _ in 0..MAX_SWAP_ATTEMPTS {
        let (old, mut stored) = load(platform.store, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        stored.greeting.name.clone_from(&name);
        stored.greeting.message.clone_from(&message);
        stored.greeting.updated_at = rfc3339_millis(platform.clock.now_unix_ms());
        if swap_own(platform.store, id, &old, &encode(&stored)?).await? {
            return Ok(stored.greeting);
        }
    }
    Err(conflict(id))
}

/// Removes the record, then blanks its log entry: a failure in between leaves an entry whose
/// record is gone, which listing skips, never a greeting that is readable but not listed.
pub async fn delete(platform: Platform<'_>, id: &str) -> Result<(), ApiError> {
    let (store, id) = (platform.store, parse_id(id)?);
    let (_, stored) = load(store, id).await?.ok_or_else(|| not_found(id))?;
    store.delete(&key(id)).await?;
    if let Some(position) = stored.position {
        let nonce = platform.random.random_u128();
        greeting_log::remove(store, position, id, nonce).await?;
    }
    Ok(())
}

/// A page of greetings, newest first. A log entry counts only if its record is still there
/// with that position, so deleted greetings and entries a crash left behind are skipped.
pub async fn list(platform: Platform<'_>, request: PageRequest) -> Result<GreetingPage, ApiError> {
    let store = platform.store;
    backfill(store, platform.random.random_u128()).await?;
    // One more than the page, to know whether another page follows.
    let listed = async |position, id| {
        Ok(load(store, id)
            .await?
            .map(|(_, stored)| stored)
            .filter(|stored| stored.position == Some(position))
            .map(|stored| stored.greeting))
    };
    let mut found =
        greeting_log::newest_first(store, request.cursor, request.limit + 1, listed).await?;
    let more = found.len() > request.limit;
    found.truncate(request.limit);
    let next_cursor = found
        .last()
        .filter(|_| more)
        .map(|(position, _)| position.to_string());
    Ok(GreetingPage {
        items: found.into_iter().map(|(_, greeting)| greeting).collect(),
        next_cursor,
    })
}

/// Gives every record without a position one, newest first and each below the last, once
/// per store: the upgrade from the version without a log. Several hosts may run it at once:
/// a record takes a position by swap, and the loser's entry is removed. Until it has
/// finished (it reads every key, once), every listing tries again.
async fn backfill(store: &dyn KeyValue, nonce: u128) -> Result<(), ApiError> {
    if store.exists(BACKFILLED_KEY).await? {
        return Ok(());
    }
    let mut ids: Vec<GreetingId> = store
        .get_keys()
        .await?
        .iter()
        .filter_map(|key| key.strip_prefix(KEY_PREFIX).and_then(GreetingId::parse))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    for id in ids {
        give_position(store, id, nonce).await?;
    }
    Ok(store.set(BACKFILLED_KEY, b"1").await?)
}

/// Takes a position for record `id` and swaps it into the record. The position is this
/// caller's alone, so a record that holds it after a swap said it lost (Spin's Redis store
/// says so of every swap) got it from this caller, whatever else changed since; otherwise its
/// entry is removed as a delete removes one, so that a delete that came in between and blanked
/// it already is not counted twice.
async fn give_position(store: &dyn KeyValue, id: GreetingId, nonce: u128) -> Result<(), ApiError> {
    for _ in 0..MAX_SWAP_ATTEMPTS {
        let Some((old, mut stored)) = load_lenient(store, id).await? else {
            return Ok(());
        };
        if stored.position.is_some() {
            return Ok(());
        }
        let position = greeting_log::take_older_position(store).await?;
        let (entry_key, entry) = greeting_log::entry(position, id);
        store.set(&entry_key, &entry).await?;
        stored.position = Some(position);
        let swapped = store
            .compare_and_swap(&key(id), &old, &encode(&stored)?)
            .await?;
        let held = || async {
            let now = load_lenient(store, id).await?;
            Ok::<_, ApiError>(now.is_some_and(|(_, now)| now.position == Some(position)))
        };
        if swapped || held().await? {
            return Ok(());
        }
        greeting_log::remove(store, position, id, nonce).await?;
    }
    Err(busy(id))
}

/// Like [`load`], but a corrupt record is left as it is (a GET of it is a 500 as before).
async fn load_lenient(
    store: &dyn KeyValue,
    id: GreetingId,
) -> Result<Option<(Vec<u8>, Stored)>, ApiError> {
    match load(store, id).await {
        Err(error) if error.code == ErrorCode::InternalError => Ok(None),
        other => other,
    }
}

fn key(id: GreetingId) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn parse_id(id: &str) -> Result<GreetingId, ApiError> {
    GreetingId::parse(id).ok_or_else(|| not_found(id))
}

fn not_found(id: impl fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("No greeting has the id {id}."))
}

/// Other writers kept replacing the greeting: the client may try again.
fn conflict(id: GreetingId) -> ApiError {
    let message = format!("The greeting {id} kept changing while it was replaced; try again.");
    ApiError::new(ErrorCode::Conflict, message)
}

fn busy(id: GreetingId) -> ApiError {
    let message = format!("The greeting {id} kept changing; try again.");
    ApiError::new(ErrorCode::StoreUnavailable, message)
}

/// Swaps the record of greeting `id` from `old` to `new`, which no other writer produces (it
/// holds a fresh timestamp): whether `new` is stored. Read back when the swap
/// says it lost, as Spin's Redis store says of every swap ([`greeting_log::remove`]).
async fn swap_own(
    store: &dyn KeyValue,
    id: GreetingId,
    old: &[u8],
    new: &[u8],
) -> Result<bool, ApiError> {
    Ok(store.compare_and_swap(&key(id), old, new).await?
        || store.get(&key(id)).await?.as_deref() == Some(new))
}

/// The stored bytes of greeting `id` (what a swap expects) and the record they hold.
async fn load(store: &dyn KeyValue, id: GreetingId) -> Result<Option<(Vec<u8>, Stored)>, ApiError> {
    let Some(value) = store.get(&key(id)).await? else {
        return Ok(None);
    };
    let stored = decode(id, &value)?;
    Ok(Some((value, stored)))
}

fn decode(id: GreetingId, value: &[u8]) -> Result<Stored, ApiError> {
    serde_json::from_slice(value).map_err(|error| {
        let message = format!("The stored greeting {id} is not a valid record: {error}.");
        ApiError::new(ErrorCode::InternalError, message)
    })
}

fn encode(stored: &Stored) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(stored).map_err(|error| {
        ApiError::new(
            ErrorCode::InternalError,
            format!("Cannot encode a greeting: {error}."),
        )
    })
}
