//! `lookup` and `forget` through the real binary, on PostgreSQL and SQLite:
//! the stored token printed exactly and counted as SQL counts it; a subject
//! erased from every table, other subjects untouched, twice harmlessly; and
//! the plaintext given never printed or logged.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::helpers::*;
use crate::pii_ops::*;

async fn lookup_prints_the_stored_token(kind: &str) {
    let (dir, db, queue) = require!(fresh_store(kind).await);
    let writer = writer_with(queue.shared(), &db, masker()).await;
    let subject_ip = "198.51.100.201";
    let mut records = generated_logins(20, "lk");
    for r in records.iter_mut().take(3) {
        r["ip"] = json!(subject_ip);
    }
    queue.send(&envelope_bodies(&records, 10)).await;
    db.until_rows("user_logins", 20, WAIT, "logins stored")
        .await;
    writer.stop().await;
    let stored = db
        .text_rows("SELECT masked_ip FROM user_logins WHERE user_id = 'lk-0000000'")
        .await[0][0]
        .clone()
        .unwrap();

    let mut outs = Vec::new();
    let out = run(dir.path(), &env_a(&db), &["lookup", "ip", subject_ip]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("{stored}\n"),
        "exactly the stored token"
    );
    assert!(out.stderr.contains("lookup") && out.stderr.contains("it-dpo"));
    outs.push(out);

    let sql =
        format!("SELECT CAST(COUNT(*) AS TEXT) FROM user_logins WHERE masked_ip = '{stored}'");
    let expected = db.text_rows(&sql).await[0][0].clone().unwrap();
    assert_eq!(expected, "3");
    let out = run(
        dir.path(),
        &env_a(&db),
        &["lookup", "--count", "ip", subject_ip],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("user_logins\t{expected}")),
        "{}",
        out.stdout
    );
    outs.push(out);

    // After a rotation: the new form first, then the old one.
    let out = run(dir.path(), &env_b(&db, true), &["lookup", "ip", subject_ip]).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with(&format!("enc:{}:", key_b().id())));
    assert_eq!(lines[1], stored);
    outs.push(out);
    // A field the policy does not mask: refused without naming it, since
    // it may be the value typed in the wrong place.
    let out = run(dir.path(), &env_a(&db), &["lookup", subject_ip, "ip"]).await;
    assert!(!out.ok);
    outs.push(out);
    for o in &outs {
        assert!(!o.stdout.contains(subject_ip) && !o.stderr.contains(subject_ip));
    }
}

async fn forget_erases_a_subject(kind: &str) {
    let (dir, db, queue) = require!(fresh_store(kind).await);
    let writer = writer_with(queue.shared(), &db, masker()).await;
    let (ip, device) = ("198.51.100.77", "dev-subject-77");
    let mut records = generated_logins(10, "other");
    records.push(json!({"user_id": "subject-1", "ip": ip, "device_id": "d-1"}));
    records.push(json!({"user_id": "subject-2", "ip": "198.51.100.1", "device_id": device}));
    records.extend(tune_records("subj", ip, "dev-x"));
    records.extend(tune_records("other", "203.0.113.50", "dev-other"));
    records.push(json!({"odd": "shape", "ip": ip}));
    records.push(json!({"odd": "shape", "ip": "203.0.113.51"}));
    let mut bodies = envelope_bodies(&records, 100);
    bodies.push(format!("not json {{ ip {ip}"));
    bodies.push("not json { ip 203.0.113.52".to_owned());
    queue.send(&bodies).await;
    eventually(WAIT, "rows stored", || async {
        db.count("user_logins").await == 12
            && db.count("tune_events").await == 2
            && db.count("tune_adjustments").await == 2
            && db.count("rejected_records").await == 4
    })
    .await;
    writer.stop().await;
    let others = "SELECT user_id, masked_ip, masked_device_id FROM user_logins WHERE user_id LIKE 'other%' ORDER BY user_id";
    let others_before = db.text_rows(others).await;
    let other_event =
        "SELECT masked_ip, CAST(extra AS TEXT) FROM tune_events WHERE event_id = 'other-e1'";
    let other_event_before = db.text_rows(other_event).await;
    let tokens: Vec<String> = [("ip", ip), ("device_id", device)]
        .iter()
        .map(|(f, v)| {
            masker()
                .mask_text(masker().policy().strategy(f), v)
                .unwrap()
        })
        .collect();
    let before = db.dump().await;
    assert!(tokens.iter().all(|t| before.contains(t.as_str())));

    let args = ["forget", "ip", ip, "device_id", device];
    let dry = run(
        dir.path(),
        &env_a(&db),
        &[&args[..], &["--dry-run"]].concat(),
    )
    .await;
    assert!(dry.ok, "{}", dry.stderr);
    assert!(dry.stdout.contains("would delete 2 rows"), "{}", dry.stdout);
    assert_eq!(
        db.count("user_logins").await,
        12,
        "a dry run changes nothing"
    );

    let out = run(dir.path(), &env_a(&db), &args).await;
    assert!(out.ok, "{}", out.stderr);
    let dump = db.dump().await;
    for t in &tokens {
        assert!(!dump.contains(t.as_str()), "{t} is gone:\n{}", out.stdout);
    }
    assert_eq!(db.count("user_logins").await, 10);
    assert_eq!(db.count("rejected_records").await, 2, "{}", out.stdout);
    assert_eq!(
        db.text_rows(others).await,
        others_before,
        "other subjects untouched"
    );
    assert_eq!(db.text_rows(other_event).await, other_event_before);
    // The subject's event stays, for accounting, without its PII.
    let kept = db
        .text_rows("SELECT CAST(payout AS TEXT), masked_ip, masked_device_id, CAST(extra AS TEXT) FROM tune_events WHERE event_id = 'subj-e1'")
        .await;
    assert_eq!(kept.len(), 1);
    assert!(kept[0][0].as_deref().unwrap().starts_with("1.25"));
    assert_eq!(kept[0][1], None);
    assert_eq!(kept[0][2], None);
    assert!(!kept[0][3].as_deref().unwrap().contains("enc:"));
    assert!(!dump.contains("subj-aff-secret"));

    let again = run(dir.path(), &env_a(&db), &args).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(
        again.stdout.contains("user_logins        deleted 0 rows"),
        "{}",
        again.stdout
    );
    assert_eq!(db.count("user_logins").await, 10);
    for o in [&dry, &out, &again] {
        for secret in [ip, device] {
            assert!(
                !o.stdout.contains(secret) && !o.stderr.contains(secret),
                "{secret} not shown"
            );
        }
        assert!(o.stderr.contains("forget") && o.stderr.contains("it-dpo"));
    }
}

on_both_databases!(lookup_prints_the_stored_token, forget_erases_a_subject);
