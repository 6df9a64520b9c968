//! Notification endpoints over real HTTP against the real binary (contract §5.2), with this service's
//! envelopes and real statuses.

mod common;

use common::{Server, assert_key_order};
use serde_json::json;

const NOTIFICATION_KEYS: &[&str] = &[
    "id",
    "user_id",
    "title",
    "message",
    "type",
    "status",
    "priority",
    "channel",
    "template_id",
    "data",
    "created_at",
    "updated_at",
    "sent_at",
    "read_at",
    "expires_at",
    "send_at",
    "attempts",
    "delivery_id",
    "deliveries",
    "delivered_at",
    "next_attempt_at",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_endpoints() {
    let s = Server::start();
    let base = "/api/v1/notifications";
    let note = json!({"user_id": "carol", "title": "Hi", "message": "Hello", "type": "info", "channel": "email", "data": {"k": "v"}, "expires_at": "2100-01-01T00:00:00Z"});
    let (status, created, text) = s.call("POST", base, Some(note.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_key_order(&text, &["success", "message", "notification"]);
    assert_eq!((created["success"].clone(), created["message"].as_str()), (json!(true), Some("Notification created successfully")));
    let n = &created["notification"];
    let inner = &text[text.find(r#""notification":"#).unwrap() + 15..text.len() - 1];
    assert_key_order(inner, NOTIFICATION_KEYS);
    assert_eq!((n["priority"].as_str(), n["status"].as_str(), n["data"].clone()), (Some("normal"), Some("pending"), json!({"k": "v"})));
    assert_eq!((n["sent_at"].clone(), n["expires_at"].as_str()), (json!(null), Some("2100-01-01T00:00:00Z")));
    let id = n["id"].as_str().unwrap().to_string();

    for bad in [
        json!({"user_id": "carol", "title": "t", "message": "m", "type": "bogus", "channel": "email"}),
        json!({"user_id": "carol", "message": "m", "type": "info", "channel": "email"}),
        json!({"user_id": "carol", "title": "t", "message": "m", "type": "info", "channel": "pigeon"}),
        json!({"user_id": "carol", "title": "t", "message": "m", "type": "info", "channel": "email", "expires_at": "soon"}),
    ] {
        let (status, body) = s.send("POST", base, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        // The text is in `error`, where the old clients read it, and in `message`, as in every envelope.
        assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["error", "message"], "notification error envelope: {body}");
        assert_eq!(body["error"], body["message"], "{body}");
    }

    let (status, got) = s.get(&format!("{base}/{id}")).await;
    assert_eq!(
        (status, got["message"].as_str(), got["notification"]["id"].as_str()),
        (200, Some("Notification retrieved successfully"), Some(id.as_str()))
    );
    let (status, body) = s.get(&format!("{base}/missing")).await;
    let text = "notification not found: missing";
    assert_eq!((status, body), (404, json!({"error": text, "message": text})));
    let (status, updated) = s.send("PUT", &format!("/api/notifications/{id}"), Some(json!({"title": "New title"}))).await;
    assert_eq!(
        (status, updated["notification"]["title"].as_str(), updated["notification"]["message"].as_str()),
        (200, Some("New title"), Some("Hello"))
    );
    let (status, _) = s.send("PUT", &format!("{base}/{id}"), Some(json!({"status": "bogus"}))).await;
    assert_eq!(status, 400);
    let (status, sent) = s.send("POST", &format!("{base}/{id}/send"), None).await;
    assert_eq!(
        (status, sent["message"].as_str(), sent["notification"]["status"].as_str()),
        (200, Some("Notification sent successfully"), Some("sent"))
    );
    assert!(sent["notification"]["sent_at"].is_string());
    let (status, body) = s.send("POST", &format!("{base}/{id}/retry"), None).await;
    let text = "Notification is not in failed status";
    assert_eq!((status, body), (409, json!({"error": text, "message": text})));
    let (status, read) = s.send("POST", &format!("{base}/{id}/read"), None).await;
    assert_eq!(
        (status, read["message"].as_str(), read["notification"]["status"].as_str()),
        (200, Some("Notification marked as read"), Some("read"))
    );
    for action in ["send", "read", "retry"] {
        let (status, _) = s.send("POST", &format!("{base}/missing/{action}"), None).await;
        assert_eq!(status, 404, "{action}");
    }

    let mut scheduled = note.clone();
    scheduled["send_at"] = json!("2099-12-31T23:59:59Z");
    let (status, body) = s.send("POST", &format!("{base}/schedule"), Some(scheduled.clone())).await;
    assert_eq!((status, body["message"].as_str()), (201, Some("Notification scheduled successfully")), "{body}");
    assert_eq!(body["notification"]["send_at"], "2099-12-31T23:59:59Z");
    scheduled["send_at"] = json!("2000-01-01T00:00:00Z");
    let (status, _) = s.send("POST", &format!("{base}/schedule"), Some(scheduled)).await;
    assert_eq!(status, 400, "send_at in the past");
    let (status, _) = s.send("POST", &format!("{base}/schedule"), Some(note.clone())).await;
    assert_eq!(status, 400, "send_at is required");

    let (status, list, text) = s.call("GET", &format!("{base}?user_id=carol"), None).await;
    assert_eq!(status, 200);
    assert_key_order(&text, &["success", "message", "notifications", "total", "unread_count"]);
    assert_eq!(
        (list["total"].clone(), list["unread_count"].clone(), list["notifications"].as_array().unwrap().len()),
        (json!(2), json!(1), 2)
    );
    let (_, list) = s.get(&format!("{base}?user_id=carol&limit=1&offset=1")).await;
    assert_eq!(list["notifications"].as_array().unwrap().len(), 1);
    let (_, list) = s.get(&format!("{base}?user_id=carol&status=read")).await;
    assert_eq!((list["notifications"].as_array().unwrap().len(), list["total"].clone()), (1, json!(2)));
    let (status, body) = s.get(base).await;
    let text = "User ID is required";
    assert_eq!((status, body), (400, json!({"error": text, "message": text})));
    let (status, list) = s.get(&format!("{base}?user_id=nobody")).await;
    assert_eq!((status, list["notifications"].clone()), (200, json!([])));
    let (_, unread) = s.get(&format!("{base}/unread?user_id=carol")).await;
    assert_eq!(
        (unread["message"].as_str(), unread["notifications"].as_array().unwrap().len()),
        (Some("Unread notifications retrieved successfully"), 1)
    );
    let (status, stats, text) = s.call("GET", &format!("{base}/stats?user_id=carol"), None).await;
    assert_eq!(status, 200);
    assert_key_order(&text, &["success", "message", "stats"]);
    assert_eq!(stats["stats"]["total_notifications"], 2);
    assert_eq!(stats["stats"]["by_status"], json!({"pending": 1, "read": 1}));
    assert_eq!(stats["stats"]["by_type"], json!({"info": 2}));
    let (status, _) = s.get(&format!("{base}/stats")).await;
    assert_eq!(status, 400);

    let (status, body) = s.send("POST", &format!("{base}/read-all"), Some(json!({"user_id": "carol"}))).await;
    assert_eq!((status, body), (200, json!({"success": true, "message": "Marked 1 notifications as read"})));
    let (status, _) = s.send("POST", &format!("{base}/read-all"), Some(json!({}))).await;
    assert_eq!(status, 400);

    let bulk = json!({"user_ids": ["d1", "d2"], "title": "Sale", "message": "50% off", "type": "marketing", "channel": "push"});
    let (status, body) = s.send("POST", &format!("{base}/bulk"), Some(bulk)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["message"].as_str(), body["total"].clone(), body["unread_count"].clone()),
        (Some("Created 2 notifications"), json!(2), json!(0))
    );
    assert_eq!(body["notifications"][0]["priority"], "low", "type default");
    let (status, _) = s.send("POST", &format!("{base}/bulk"), Some(json!({"title": "x"}))).await;
    assert_eq!(status, 400);
    // A template the engine refuses is the caller's error, a 400, and creates nothing for anyone.
    for (field, value, text) in [("type", "no-such-type", "type must be one of"), ("priority", "urgent-ish", "priority must be one of")] {
        let mut bad = json!({"user_ids": ["e1", "e2"], "title": "Sale", "message": "50% off", "type": "marketing", "channel": "push"});
        bad[field] = json!(value);
        let (status, body) = s.send("POST", &format!("{base}/bulk"), Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(text)), "{body}");
    }
    for user in ["e1", "e2"] {
        let (status, list) = s.get(&format!("{base}?user_id={user}")).await;
        assert_eq!((status, list["total"].clone()), (200, json!(0)), "{user}: {list}");
    }

    let (status, body) = s.send("POST", &format!("{base}/cleanup"), None).await;
    assert_eq!((status, body), (200, json!({"success": true, "message": "Cleaned up 0 expired notifications"})));
    let (status, body) = s.send("DELETE", &format!("{base}/{id}"), None).await;
    assert_eq!((status, body), (200, json!({"success": true, "message": "Notification deleted successfully"})));
    let (status, body) = s.send("DELETE", &format!("{base}/{id}"), None).await;
    assert_eq!((status, body["error"].is_string()), (404, true));
}
