//! S3's XML answers: the ListObjectsV2 result, and the error body every failed request but a
//! `HEAD` carries (`<Error><Code>NoSuchBucket</Code><Message>...</Message>...</Error>`).
//! Elements not named here are skipped.

use instant_xml::FromXml;

/// The namespace of S3's results (not of its errors).
const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// One page of a ListObjectsV2 listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// With a delimiter: the distinct key prefixes up to it.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts, when the listing is truncated.
    pub next_continuation_token: Option<String>,
}

/// An object as ListObjectsV2 describes it.
#[derive(Debug, PartialEq, Eq, FromXml)]
#[xml(rename = "Contents", ns(S3_NAMESPACE))]
pub struct ListedObject {
    #[xml(rename = "Key")]
    pub key: String,
    /// RFC 3339, as S3 wrote it.
    #[xml(rename = "LastModified")]
    pub last_modified: Option<String>,
    /// Quoted, as S3 sends it.
    #[xml(rename = "ETag")]
    pub etag: Option<String>,
    #[xml(rename = "Size")]
    pub size: Option<u64>,
}

#[derive(FromXml)]
#[xml(rename = "CommonPrefixes", ns(S3_NAMESPACE))]
struct CommonPrefix {
    #[xml(rename = "Prefix")]
    prefix: String,
}

#[derive(FromXml)]
#[xml(rename = "ListBucketResult", ns(S3_NAMESPACE))]
struct ListBucketResult {
    contents: Vec<ListedObject>,
    common_prefixes: Vec<CommonPrefix>,
    #[xml(rename = "IsTruncated")]
    is_truncated: Option<bool>,
    #[xml(rename = "NextContinuationToken")]
    next_continuation_token: Option<String>,
}

/// Reads a ListObjectsV2 result. A truncated one must say where to go on.
pub fn parse_list(body: &[u8]) -> Result<ListPage, String> {
    let text = std::str::from_utf8(body).map_err(|_| "it is not UTF-8".to_owned())?;
    let result: ListBucketResult =
        instant_xml::from_str(text.trim()).map_err(|error| error.to_string())?;
    let token = result
        .next_continuation_token
        .filter(|token| !token.is_empty());
    let next_continuation_token = match (result.is_truncated, token) {
        (Some(true), None) => return Err("it is truncated without a continuation token".into()),
        (Some(true), token) => token,
        _ => None,
    };
    Ok(ListPage {
        objects: result.contents,
        common_prefixes: result
            .common_prefixes
            .into_iter()
            .map(|p| p.prefix)
            .collect(),
        next_continuation_token,
    })
}

/// What S3 said went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    /// S3's code, e.g. `NoSuchBucket`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`.
    pub code: String,
    pub message: Option<String>,
}

#[derive(FromXml)]
#[xml(rename = "Error")]
struct ErrorElement {
    #[xml(rename = "Code")]
    code: Option<String>,
    #[xml(rename = "Message")]
    message: Option<String>,
}

/// The error in `body`, when it is S3's XML error with a code.
pub fn parse_error(body: &[u8]) -> Option<S3Error> {
    let text = std::str::from_utf8(body).ok()?;
    let element: ErrorElement = instant_xml::from_str(text.trim()).ok()?;
    let code = element.code.filter(|code| !code.trim().is_empty())?;
    Some(S3Error {
        code: code.trim().to_owned(),
        message: element
            .message
            .map(|message| message.trim().to_owned())
            .filter(|message| !message.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::{ListPage, ListedObject, S3Error, parse_error, parse_list};

    /// What AWS answers (trimmed of what repeats).
    const AWS_LISTING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>uploads</Name><Prefix>random/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>random/a&amp;b.bin</Key><LastModified>2026-11-22T10:01:05.000Z</LastModified>
    <ETag>&quot;0f343b0931126a20f133d67c2b018a3b&quot;</ETag>
    <ChecksumAlgorithm>SHA256</ChecksumAlgorithm><Size>1024</Size>
    <Owner><ID>75aa57f0</ID></Owner><StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes><Prefix>random/2026-11-21/</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>random/2026-11-22/</Prefix></CommonPrefixes>
</ListBucketResult>"#;

    #[test]
    fn reads_a_listing() {
        assert_eq!(
            parse_list(AWS_LISTING.as_bytes()),
            Ok(ListPage {
                objects: vec![ListedObject {
                    key: "random/a&b.bin".into(),
                    last_modified: Some("2026-11-22T10:01:05.000Z".into()),
                    etag: Some("\"0f343b0931126a20f133d67c2b018a3b\"".into()),
                    size: Some(1024),
                }],
                common_prefixes: vec!["random/2026-11-21/".into(), "random/2026-11-22/".into()],
                next_continuation_token: Some(
                    "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into()
                ),
            })
        );
    }

    #[test]
    fn a_complete_listing_has_no_next_page() {
        let body = r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated><NextContinuationToken>stale</NextContinuationToken></ListBucketResult>"#;
        assert_eq!(parse_list(body.as_bytes()), Ok(ListPage::default()));
    }

    #[test]
    fn refuses_what_is_not_a_listing() {
        for body in [
            &b"<html>captive portal</html>"[..],
            b"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>true</IsTruncated></ListBucketResult>",
            b"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Contents><Size>1</Size></Contents></ListBucketResult>",
            b"\xff",
            b"",
        ] {
            assert!(parse_list(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn reads_code_and_message_of_errors() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256
20130524T000000Z</StringToSign><RequestId>4442587FB7D0A2F9</RequestId><HostId>x</HostId></Error>"#;
        assert_eq!(
            parse_error(body),
            Some(S3Error {
                code: "SignatureDoesNotMatch".into(),
                message: Some("The request signature we calculated does not match the signature you provided. Check your key and signing method.".into()),
            })
        );
    }

    #[test]
    fn unescapes_entities_and_allows_no_message() {
        assert_eq!(
            parse_error(
                b"<Error><Code>NoSuchBucket</Code><BucketName>a&amp;b</BucketName></Error>"
            ),
            Some(S3Error {
                code: "NoSuchBucket".into(),
                message: None,
            })
        );
        assert_eq!(
            parse_error(b"<Error><Code>X</Code><Message>a &lt; b</Message></Error>")
                .and_then(|error| error.message),
            Some("a < b".into())
        );
    }

    #[test]
    fn anything_else_is_no_error() {
        for body in [
            &b""[..],
            b"Bad Gateway",
            b"<html><body>502</body></html>",
            b"<Error><Message>no code</Message></Error>",
            b"<Error><Code></Code></Error>",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_error(body), None, "{body:?}");
        }
    }
}
