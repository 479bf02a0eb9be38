//! The harness runs the fake without Meteor's legacy greeting, because the reference gateway
//! fails its DDP handshake on it: the first frame after `connect` must be `connected`.

use acg_bench::world::BenchWorld;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_first_frame_after_connect_is_connected() {
    let world = BenchWorld::start(1, 1, 1).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(world.fake.ws_url())
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"msg":"connect","version":"1","support":["1"]}"#.into(),
    ))
    .await
    .unwrap();
    let first = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["msg"], "connected", "first frame: {first}");
}
