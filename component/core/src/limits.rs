//! Every input limit of the API, in one place (the README's "Limits" table mirrors this file).

use std::ops::RangeInclusive;

/// A greeting's `name` and the `{name}` of `/hello/{name}`, counted in Unicode scalar values
/// (`char`s), not bytes.
pub const NAME_CHARS: RangeInclusive<usize> = 1..=64;

/// A greeting's optional `message`, in `char`s.
pub const MESSAGE_MAX_CHARS: usize = 280;

/// A request body, in bytes. The Spin adapter stops reading one byte past it.
pub const BODY_MAX_BYTES: usize = 16 * 1024;

/// The `word` of `/api/mirror`, in `char`s after percent-decoding.
pub const MIRROR_WORD_CHARS: RangeInclusive<usize> = 1..=1024;

/// `?limit=` of `GET /api/greetings` when it is not given.
pub const LIST_LIMIT_DEFAULT: usize = 20;

/// The largest `?limit=` of `GET /api/greetings`.
pub const LIST_LIMIT_MAX: usize = 100;

/// `?bytes=` of `POST /api/upload-random`: the size of the random object, up to 1 MiB.
pub const UPLOAD_BYTES: RangeInclusive<usize> = 1..=1024 * 1024;

/// `?bytes=` when it is not given.
pub const UPLOAD_BYTES_DEFAULT: usize = 1024;

/// `?limit=` of `GET /api/uploads` when it is not given.
pub const UPLOADS_LIMIT_DEFAULT: usize = 20;

/// The largest `?limit=` of `GET /api/uploads`.
pub const UPLOADS_LIMIT_MAX: usize = 100;
