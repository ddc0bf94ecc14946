//! S3's XML answers: the ListObjectsV2 result, and the error body every failed request but a
//! `HEAD` carries (`<Error><Code>NoSuchBucket</Code><Message>...</Message>...</Error>`).
//! Read with quick-xml's pull parser; elements are matched by local name (S3 puts its results
//! in a namespace, its errors in none), and elements not named here are skipped.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

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
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    /// RFC 3339, as S3 wrote it.
    pub last_modified: Option<String>,
    /// Quoted, as S3 sends it.
    pub etag: Option<String>,
    pub size: Option<u64>,
}

/// Reads a ListObjectsV2 result. A truncated one must say where to go on.
pub fn parse_list(body: &[u8]) -> Result<ListPage, String> {
    let mut page = ListPage::default();
    let mut object = ListedObject::default();
    let (mut truncated, mut token) = (false, None);
    let root = walk(body, |path, text| {
        match path {
            [_, "Contents", "Key"] => object.key = text,
            [_, "Contents", "LastModified"] => object.last_modified = Some(text),
            [_, "Contents", "ETag"] => object.etag = Some(text),
            [_, "Contents", "Size"] => {
                let size = text.trim().parse();
                object.size = Some(size.map_err(|_| format!("a Size is `{text}`"))?);
            }
            [_, "Contents"] => {
                if object.key.is_empty() {
                    return Err("an object has no Key".to_owned());
                }
                page.objects.push(std::mem::take(&mut object));
            }
            [_, "CommonPrefixes", "Prefix"] => page.common_prefixes.push(text),
            [_, "IsTruncated"] => truncated = text.trim() == "true",
            [_, "NextContinuationToken"] => token = Some(text).filter(|t| !t.is_empty()),
            _ => {}
        }
        Ok(())
    })?;
    if root != "ListBucketResult" {
        return Err(format!("its root element is {root}, not ListBucketResult"));
    }
    page.next_continuation_token = match (truncated, token) {
        (true, None) => return Err("it is truncated without a continuation token".into()),
        (true, token) => token,
        (false, _) => None,
    };
    Ok(page)
}

/// What S3 said went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    /// S3's code, e.g. `NoSuchBucket`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`.
    pub code: String,
    pub message: Option<String>,
}

/// The error in `body`, when it is S3's XML error with a code.
pub fn parse_error(body: &[u8]) -> Option<S3Error> {
    let (mut code, mut message) = (String::new(), None);
    let root = walk(body, |path, text| {
        match path {
            [_, "Code"] => code = text.trim().to_owned(),
            [_, "Message"] => message = Some(text.trim().to_owned()).filter(|m| !m.is_empty()),
            _ => {}
        }
        Ok(())
    })
    .ok()?;
    (root == "Error" && !code.is_empty()).then_some(S3Error { code, message })
}

/// Reads a whole document, calling `element` at the end of every element with the local names
/// of the elements from the root down to it and the element's text (what follows its last
/// child element, if it has any). Answers the root's name.
fn walk(
    body: &[u8],
    mut element: impl FnMut(&[&str], String) -> Result<(), String>,
) -> Result<String, String> {
    let document = std::str::from_utf8(body).map_err(|_| "it is not UTF-8".to_owned())?;
    let mut reader = Reader::from_str(document);
    let mut names: Vec<String> = Vec::new();
    let mut root = None;
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(|error| error.to_string())?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() && names.is_empty() => {
                return Err("it has more than one root element".into());
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                root.get_or_insert_with(|| name.clone());
                names.push(name);
                text.clear();
                if let Event::Empty(_) = event {
                    close(&mut names, &mut text, &mut element)?;
                }
            }
            Event::End(_) => close(&mut names, &mut text, &mut element)?,
            Event::Text(content) => text.push_str(&content.decode().map_err(|e| e.to_string())?),
            Event::CData(content) => text.push_str(&content.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(reference) => {
                match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(character) => text.push(character),
                    None => {
                        let name = reference.decode().map_err(|e| e.to_string())?;
                        let entity = resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("it has the unknown entity &{name};"))?;
                        text.push_str(entity);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = names.last() {
        return Err(format!("it ends inside {open}"));
    }
    root.ok_or_else(|| "it has no element".to_owned())
}

/// Ends the innermost element: reports it, then forgets it.
fn close(
    names: &mut Vec<String>,
    text: &mut String,
    element: &mut impl FnMut(&[&str], String) -> Result<(), String>,
) -> Result<(), String> {
    let path: Vec<&str> = names.iter().map(String::as_str).collect();
    element(&path, std::mem::take(text))?;
    names.pop();
    Ok(())
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
    fn reads_cdata_character_references_and_empty_elements() {
        let body = "<ListBucketResult><Contents><Key><![CDATA[a<b]]>&#x20;&#99;</Key><ETag/></Contents></ListBucketResult>";
        let page = parse_list(body.as_bytes()).expect("a listing");
        assert_eq!(page.objects[0].key, "a<b c");
        assert_eq!(page.objects[0].etag.as_deref(), Some(""));
    }

    #[test]
    fn refuses_what_is_not_a_listing() {
        for body in [
            &b"<html>captive portal</html>"[..],
            b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            b"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
            b"<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>",
            b"<ListBucketResult><Contents><Key>k</Key></Contents>",
            b"<ListBucketResult><Prefix>&nbsp;</Prefix></ListBucketResult>",
            b"<ListBucketResult/><ListBucketResult/>",
            b"\xff",
            b"",
        ] {
            assert!(
                parse_list(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
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
            b"<NotAnError><Code>X</Code></NotAnError>",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_error(body), None, "{body:?}");
        }
    }
}
