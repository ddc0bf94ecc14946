//! Random objects in the S3 bucket: what `POST /api/upload-random` writes and
//! `GET /api/uploads` lists.
//!
//! Keys are `random/<YYYY-MM-DD>/<uuid>.bin`: the UTC date of the upload, then a UUIDv7,
//! whose first 48 bits are the upload's Unix time in milliseconds and the rest random. So keys
//! sort by upload time, as S3 lists them, and uploads from several instances never collide.

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::errors::ApiError;
use crate::platform::Platform;
use crate::s3::{Client, ListedObject, S3Config, hex};
use crate::timestamp::rfc3339_millis;

/// Every upload's key starts with it.
pub const PREFIX: &str = "random/";

/// The content type of the random objects.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// ListObjectsV2 requests one listing may make (each reads up to 1000 keys): a bound on the
/// time and requests a listing costs, however large the bucket.
pub const LIST_REQUESTS_MAX: usize = 20;

/// An object `POST /api/upload-random` stored.
#[derive(Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Upload {
    #[schema(example = "greeter-uploads")]
    pub bucket: String,
    #[schema(example = "random/2026-11-22/019aab3c-5f1e-7d3a-9c4b-1e2f3a4b5c6d.bin")]
    pub key: String,
    /// The object's size.
    #[schema(example = 1024)]
    pub bytes: usize,
    /// SHA-256 of the object, in hex; S3 checked it on receipt (`x-amz-checksum-sha256`).
    #[schema(example = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")]
    pub sha256: String,
    /// The ETag S3 gave the object, without quotes (for a simple upload to AWS, its MD5).
    #[schema(example = "0f343b0931126a20f133d67c2b018a3b")]
    pub etag: Option<String>,
}

/// The most recent uploads, newest first.
#[derive(Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct UploadList {
    #[schema(example = "greeter-uploads")]
    pub bucket: String,
    pub items: Vec<UploadedObject>,
}

/// An object under `random/`, as ListObjectsV2 describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct UploadedObject {
    #[schema(example = "random/2026-11-22/019aab3c-5f1e-7d3a-9c4b-1e2f3a4b5c6d.bin")]
    pub key: String,
    #[schema(example = 1024)]
    pub bytes: Option<u64>,
    /// RFC 3339, as S3 gives it.
    #[schema(format = DateTime, example = "2026-11-22T10:01:05.000Z")]
    pub last_modified: Option<String>,
    #[schema(example = "0f343b0931126a20f133d67c2b018a3b")]
    pub etag: Option<String>,
}

/// Writes `bytes` random bytes as a new object and says what S3 stored.
pub async fn upload_random(platform: Platform<'_>, bytes: usize) -> Result<Upload, ApiError> {
    let config = S3Config::from_variables(platform.variables).await?;
    let mut body = vec![0; bytes];
    platform.random.fill_bytes(&mut body);
    let now = platform.clock.now_unix_ms();
    let key = object_key(now, platform.random.random_u128());
    let sha256: [u8; 32] = Sha256::digest(&body).into();
    let client = Client::new(&config, platform.outbound, now);
    let etag = client.put_object(&key, CONTENT_TYPE, body, &sha256).await?;
    Ok(Upload {
        bucket: client.bucket_name().to_owned(),
        key,
        bytes,
        sha256: hex(&sha256),
        etag,
    })
}

/// `random/<YYYY-MM-DD>/<UUIDv7>.bin` for an upload at `unix_ms`.
fn object_key(unix_ms: u64, random: u128) -> String {
    let date = &rfc3339_millis(unix_ms)[..10];
    format!("{PREFIX}{date}/{}.bin", uuid_v7(unix_ms, random))
}

/// RFC 9562's UUIDv7: 48 bits of Unix milliseconds, the version (7), 12 random bits, the
/// variant (binary 10), 62 random bits; lowercase, hyphenated.
fn uuid_v7(unix_ms: u64, random: u128) -> String {
    let time = u128::from(unix_ms) & ((1 << 48) - 1);
    let rand_a = random >> 64 & 0xfff;
    let rand_b = random & ((1 << 62) - 1);
    let value = time << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        value >> 96,
        value >> 80 & 0xffff,
        value >> 64 & 0xffff,
        value >> 48 & 0xffff,
        value & 0xffff_ffff_ffff
    )
}

/// The `limit` most recent uploads, newest first.
///
/// S3 lists keys in ascending order only. Since keys sort by upload time, this reads the days
/// there are (the common prefixes of `random/` at `/`), then every key of the newest day, of
/// the day before and so on until it has `limit`, newest (greatest) key first. It makes at
/// most [`LIST_REQUESTS_MAX`] requests: of a day with more keys than those can read, it lists
/// the first ones.
pub async fn recent_uploads(platform: Platform<'_>, limit: usize) -> Result<UploadList, ApiError> {
    let config = S3Config::from_variables(platform.variables).await?;
    let client = Client::new(&config, platform.outbound, platform.clock.now_unix_ms());
    let mut budget = LIST_REQUESTS_MAX;
    let (_, mut days) = list_all(&client, PREFIX, Some("/"), &mut budget).await?;
    days.retain(|prefix| is_day_prefix(prefix));
    days.sort_unstable();
    days.dedup();
    let mut items = Vec::new();
    for day in days.iter().rev() {
        if items.len() >= limit || budget == 0 {
            break;
        }
        let (mut objects, _) = list_all(&client, day, None, &mut budget).await?;
        objects.sort_unstable_by(|a, b| b.key.cmp(&a.key));
        items.extend(objects.into_iter().map(|object| UploadedObject {
            key: object.key,
            bytes: object.size,
            last_modified: object.last_modified,
            etag: object.etag.map(|etag| etag.trim_matches('"').to_owned()),
        }));
    }
    items.truncate(limit);
    Ok(UploadList {
        bucket: client.bucket_name().to_owned(),
        items,
    })
}

/// Every object and common prefix under `prefix`, page after page, while `budget` lasts.
async fn list_all(
    client: &Client<'_>,
    prefix: &str,
    delimiter: Option<&str>,
    budget: &mut usize,
) -> Result<(Vec<ListedObject>, Vec<String>), ApiError> {
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    while *budget > 0 {
        *budget -= 1;
        let page = client
            .list_objects(prefix, delimiter, token.as_deref())
            .await?;
        objects.extend(page.objects);
        prefixes.extend(page.common_prefixes);
        token = page.next_continuation_token;
        if token.is_none() {
            break;
        }
    }
    Ok((objects, prefixes))
}

/// `random/YYYY-MM-DD/`, the prefix of one day's uploads.
fn is_day_prefix(prefix: &str) -> bool {
    let Some(date) = prefix
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix('/'))
    else {
        return false;
    };
    date.len() == 10
        && date.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::{is_day_prefix, object_key, uuid_v7};

    #[test]
    fn keys_are_dated_uuid_v7s() {
        // 2023-11-14T22:13:20Z = 0x18bcfe56800 ms.
        assert_eq!(
            object_key(1_700_000_000_000, u128::MAX),
            "random/2023-11-14/018bcfe5-6800-7fff-bfff-ffffffffffff.bin"
        );
        assert_eq!(
            uuid_v7(1_700_000_000_000, 0),
            "018bcfe5-6800-7000-8000-000000000000"
        );
        assert_eq!(
            uuid_v7(0, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "00000000-0000-7def-8123-456789abcdef"
        );
    }

    #[test]
    fn keys_sort_by_time() {
        let keys: Vec<String> = [
            (1_700_000_000_000, u128::MAX),
            (1_700_000_000_001, 0),
            (1_700_086_400_000, 7),
            (4_102_444_800_000, 1),
        ]
        .into_iter()
        .map(|(ms, random)| object_key(ms, random))
        .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn knows_day_prefixes() {
        assert!(is_day_prefix("random/2026-11-22/"));
        for other in [
            "random/2026-11-22",
            "random/2026-1-22/",
            "random/notes/",
            "random/2026/11/22/",
            "other/2026-11-22/",
            "random/2026-11-22x/",
        ] {
            assert!(!is_day_prefix(other), "{other}");
        }
    }
}
