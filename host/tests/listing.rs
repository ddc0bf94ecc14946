//! The greeting listing against real stores (issue 14): a page costs what it lists however
//! many greetings exist; concurrent writers on two hosts sharing one Redis, deletes racing each
//! other, a host killed mid-write and records from before the log never cost an acknowledged
//! greeting, never list one twice and never list a deleted one.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use support::redis::{PASSWORD, Redis};
use support::*;

fn host_on_redis(redis: &Redis, dir: &Path) -> Host {
    let state = tempfile::tempdir_in(dir).unwrap().keep();
    HostBuilder::new(&app_manifest(), &state)
        .arg("--runtime-config-file")
        .arg(redis.runtime_config(dir))
        .env("REDIS_PASSWORD", PASSWORD)
        .start()
}

/// Every listed id, following cursors; panics on a failed page or an id listed twice.
fn all_ids(host: &Host) -> Vec<String> {
    let (mut ids, mut query) = (Vec::new(), "limit=7".to_string());
    loop {
        let page = get(&host.url(&format!("/api/greetings?{query}")));
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        for item in page["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => query = format!("limit=7&cursor={next}"),
            None => break,
        }
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id is listed twice");
    ids
}

fn as_set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

/// Redis's count of calls of `command` since the last reset.
fn calls(client: &mut ::redis::Connection, command: &str) -> u64 {
    let stats: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query(client)
        .unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[test]
fn a_page_reads_the_same_few_keys_with_200_or_2000_greetings() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let host = host_on_redis(&redis, dir.path());
    let mut client = redis.client().unwrap();
    let mut reads_per_page = Vec::new();
    for total in [200, 2000] {
        let each = (total - created(&mut client)) / 8;
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let host = &host;
                scope.spawn(move || {
                    for _ in 0..each {
                        create_greeting(host, &format!("w{writer}"));
                    }
                });
            }
        });
        let cursor = get(&host.url("/api/greetings?limit=20")).json()["next_cursor"]
            .as_str()
            .unwrap()
            .to_string();
        for query in ["limit=20".to_string(), format!("limit=20&cursor={cursor}")] {
            ::redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .exec(&mut client)
                .unwrap();
            let page = get(&host.url(&format!("/api/greetings?{query}"))).json();
            assert_eq!(page["items"].as_array().unwrap().len(), 20);
            assert_eq!(calls(&mut client, "scan") + calls(&mut client, "keys"), 0);
            reads_per_page.push(calls(&mut client, "get"));
        }
    }
    // Each of 21 greetings is an entry and a record, plus the head and the backfill marker.
    assert!(
        reads_per_page.iter().all(|&reads| reads <= 2 * 21 + 2),
        "{reads_per_page:?}"
    );
    assert_eq!(
        reads_per_page[..2],
        reads_per_page[2..],
        "independent of the total"
    );
}

/// How many greetings have been created: the log's head counter.
fn created(client: &mut ::redis::Connection) -> u64 {
    let head: Option<u64> = ::redis::cmd("GET")
        .arg("greeting-log:head")
        .query(client)
        .unwrap();
    head.unwrap_or(0)
}

/// The first new greeting's log position: there is room below it for older records.
const FIRST_POSITION: u64 = 1 << 40;

#[test]
fn counters_and_entries_are_plain_keys_stored_as_spin_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let host = host_on_redis(&redis, dir.path());
    let id = create_greeting(&host, "Ada");
    create_greeting(&host, "Grace");
    let mut client = redis.client().unwrap();
    let text = |key: &str, client: &mut ::redis::Connection| -> Option<String> {
        ::redis::cmd("GET").arg(key).query(client).unwrap()
    };
    // INCRBY's decimal text, as Spin's Redis store keeps a wasi:keyvalue counter.
    assert_eq!(text("greeting-log:head", &mut client).as_deref(), Some("2"));
    let entry = format!("greeting-log:{FIRST_POSITION}");
    assert_eq!(text(&entry, &mut client), Some(id.clone()));
    let record: serde_json::Value =
        serde_json::from_str(&text(&format!("greeting:{id}"), &mut client).unwrap()).unwrap();
    assert_eq!(
        (record["name"].as_str(), record["position"].as_u64()),
        (Some("Ada"), Some(FIRST_POSITION))
    );
    assert_eq!(
        delete(&host.url(&format!("/api/greetings/{id}"))).status,
        204
    );
    let tombstone = text(&entry, &mut client).unwrap();
    assert!(tombstone.starts_with("deleted:"), "{tombstone}");
    let dead_count = format!("greeting-log:dead:1:{}", FIRST_POSITION / 64);
    assert_eq!(text(&dead_count, &mut client).as_deref(), Some("1"));
}

#[test]
fn concurrent_writers_and_racing_deletes_on_two_hosts_keep_the_listing_exact() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let hosts = [
        host_on_redis(&redis, dir.path()),
        host_on_redis(&redis, dir.path()),
    ];
    const WRITERS: usize = 8;
    const EACH: usize = 30;
    let (created, deleted): (Vec<String>, Vec<String>) = std::thread::scope(|scope| {
        let listing = scope.spawn(|| {
            // Pages read while the writers write: never a failure, never an id twice.
            for round in 0..20 {
                all_ids(&hosts[round % 2]);
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let hosts = &hosts;
                scope.spawn(move || {
                    let (mut created, mut deleted) = (Vec::new(), Vec::new());
                    for i in 0..EACH {
                        let id =
                            create_greeting(&hosts[(writer + i) % 2], &format!("w{writer}-{i}"));
                        if i % 3 == 0 {
                            // Both hosts delete it at once: one 204 at least, the rest 204 or 404.
                            let url = |h: &Host| h.url(&format!("/api/greetings/{id}"));
                            let statuses: Vec<u16> = std::thread::scope(|race| {
                                let racers: Vec<_> = hosts
                                    .iter()
                                    .map(|h| race.spawn(move || delete(&url(h)).status))
                                    .collect();
                                racers.into_iter().map(|r| r.join().unwrap()).collect()
                            });
                            assert!(statuses.contains(&204), "{statuses:?}");
                            assert!(
                                statuses.iter().all(|s| [204, 404].contains(s)),
                                "{statuses:?}"
                            );
                            deleted.push(id.clone());
                        }
                        created.push(id);
                    }
                    (created, deleted)
                })
            })
            .collect();
        let outcome = writers.into_iter().map(|w| w.join().unwrap()).fold(
            (Vec::new(), Vec::new()),
            |(mut c, mut d), (wc, wd)| {
                c.extend(wc);
                d.extend(wd);
                (c, d)
            },
        );
        listing.join().unwrap();
        outcome
    });
    let expected: HashSet<String> = as_set(&created)
        .difference(&as_set(&deleted))
        .cloned()
        .collect();
    for host in &hosts {
        assert_eq!(as_set(&all_ids(host)), expected);
    }
    // Each deleted greeting was counted dead once, whichever host's delete won.
    let mut client = redis.client().unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("greeting-log:dead:1:*")
        .query(&mut client)
        .unwrap();
    let dead: i64 = keys
        .iter()
        .map(|key| {
            ::redis::cmd("GET")
                .arg(key)
                .query::<String>(&mut client)
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(dead as usize, deleted.len());
}

#[test]
fn a_host_killed_mid_write_loses_no_acknowledged_greeting() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = HostBuilder::new(&app_manifest(), &state).start();
    let acknowledged: Vec<String> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let url = host.url("/api/greetings");
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0.. {
                        let body = serde_json::json!({ "name": format!("w{writer}-{i}") });
                        match try_post_json(&url, &body) {
                            Some(reply) if reply.status == 201 => {
                                ids.push(reply.json()["id"].as_str().unwrap().to_string())
                            }
                            _ => return ids,
                        }
                    }
                    ids
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        host.signal(libc::SIGKILL);
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        acknowledged.len() > 50,
        "the writers were writing: {}",
        acknowledged.len()
    );
    drop(host);
    let restarted = HostBuilder::new(&app_manifest(), &state).start();
    let listed = as_set(&all_ids(&restarted));
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !listed.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not listed: {lost:?}");
    let after = create_greeting(&restarted, "after");
    assert_eq!(all_ids(&restarted)[0], after, "the newest comes first");
}

#[test]
fn greetings_from_before_the_log_are_backfilled_once_by_racing_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let mut client = redis.client().unwrap();
    // Records as the version without a log wrote them: no position, no log keys.
    let old: Vec<String> = (0..300u64)
        .map(|i| {
            let id = old_id(1_600_000_000_000 + i);
            let record = serde_json::json!({
                "id": id, "name": format!("old-{i}"), "message": "Hi",
                "created_at": "2020-09-13T12:26:40.000Z", "updated_at": "2020-09-13T12:26:40.000Z",
            });
            ::redis::cmd("SET")
                .arg(format!("greeting:{id}"))
                .arg(record.to_string())
                .exec(&mut client)
                .unwrap();
            id
        })
        .collect();
    let hosts = [
        host_on_redis(&redis, dir.path()),
        host_on_redis(&redis, dir.path()),
    ];
    // Creating does not wait for the backfill, yet lists before every older record.
    let early = create_greeting(&hosts[0], "early");
    let listings: Vec<Vec<String>> = std::thread::scope(|scope| {
        let both: Vec<_> = hosts
            .iter()
            .map(|h| scope.spawn(move || all_ids(h)))
            .collect();
        both.into_iter().map(|l| l.join().unwrap()).collect()
    });
    let newest_first: Vec<String> = std::iter::once(early)
        .chain(old.iter().rev().cloned())
        .collect();
    for listed in &listings {
        assert_eq!(listed, &newest_first);
    }
    let new = create_greeting(&hosts[0], "new");
    assert_eq!(
        all_ids(&hosts[1])[..3],
        [new, newest_first[0].clone(), newest_first[1].clone()]
    );
}

/// A ULID of `ms` as the old version made them (the spec's Crockford base32).
fn old_id(ms: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let value = (u128::from(ms) << 80) | 0x1234_5678_9abc_def0_1234;
    (0..26)
        .map(|i| ALPHABET[((value >> (125 - 5 * i)) & 31) as usize] as char)
        .collect()
}
