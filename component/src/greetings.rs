//! Greeting records in the key-value store, one JSON value per key `greeting:<id>`.
//!
//! There is no index key: several hosts write to one store, which has no compare-and-swap, so
//! a read-modify-write index would lose updates. Listing reads the store's keys instead, all
//! of them for every page: fine for thousands of greetings, not for millions.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorCode};
use crate::ids::GreetingId;
use crate::limits::{MESSAGE_MAX_CHARS, NAME_CHARS};
use crate::pagination::{PageRequest, select_page};
use crate::platform::{KeyValue, Platform};
use crate::timestamp::rfc3339_millis;
use crate::validation::check_length;

const KEY_PREFIX: &str = "greeting:";

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
    #[schema(min_length = 1, max_length = 64, example = "Ada")]
    pub name: String,
    /// Defaults to `Hello, {name}!`.
    #[schema(max_length = 280, example = "Good morning, Ada!")]
    pub message: Option<String>,
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
    /// The name and message to store: 422 when either has the wrong length.
    fn into_valid(self) -> Result<(String, String), ApiError> {
        check_length("name", &self.name, NAME_CHARS, ErrorCode::ValidationFailed)?;
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

pub fn create(platform: Platform, input: GreetingInput) -> Result<Greeting, ApiError> {
    let (name, message) = input.into_valid()?;
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
    save(platform.store, id, &greeting)?;
    Ok(greeting)
}

/// The greeting `id`; 404 when there is none (including ids that are not ULIDs).
pub fn find(store: &dyn KeyValue, id: &str) -> Result<Greeting, ApiError> {
    let id = parse_id(id)?;
    load(store, id)?.ok_or_else(|| not_found(id))
}

/// Replaces the name and message of greeting `id`, keeping its id and `created_at`.
pub fn replace(platform: Platform, id: &str, input: GreetingInput) -> Result<Greeting, ApiError> {
    let (name, message) = input.into_valid()?;
    let id = parse_id(id)?;
    let mut greeting = load(platform.store, id)?.ok_or_else(|| not_found(id))?;
    greeting.name = name;
    greeting.message = message;
    greeting.updated_at = rfc3339_millis(platform.clock.now_unix_ms());
    save(platform.store, id, &greeting)?;
    Ok(greeting)
}

pub fn delete(store: &dyn KeyValue, id: &str) -> Result<(), ApiError> {
    let id = parse_id(id)?;
    if !store.exists(&key(id))? {
        return Err(not_found(id));
    }
    Ok(store.delete(&key(id))?)
}

/// A page of greetings, newest first. Records deleted while the page is read are skipped.
pub fn list(store: &dyn KeyValue, request: PageRequest) -> Result<GreetingPage, ApiError> {
    let mut ids: Vec<GreetingId> = store
        .get_keys()?
        .iter()
        .filter_map(|key| key.strip_prefix(KEY_PREFIX).and_then(GreetingId::parse))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let page = select_page(&ids, request);
    let mut items = Vec::with_capacity(page.items.len());
    for &id in page.items {
        items.extend(load(store, id)?);
    }
    Ok(GreetingPage {
        items,
        next_cursor: page.next_cursor.as_ref().map(ToString::to_string),
    })
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

fn load(store: &dyn KeyValue, id: GreetingId) -> Result<Option<Greeting>, ApiError> {
    let Some(value) = store.get(&key(id))? else {
        return Ok(None);
    };
    serde_json::from_slice(&value).map(Some).map_err(|error| {
        let message = format!("The stored greeting {id} is not a valid record: {error}.");
        ApiError::new(ErrorCode::InternalError, message)
    })
}

fn save(store: &dyn KeyValue, id: GreetingId, greeting: &Greeting) -> Result<(), ApiError> {
    let value = serde_json::to_vec(greeting).map_err(|error| {
        ApiError::new(
            ErrorCode::InternalError,
            format!("Cannot encode a greeting: {error}."),
        )
    })?;
    Ok(store.set(&key(id), &value)?)
}
