//! The fake server's initial world: users (with passwords, display names and roles) and rooms
//! (public channels `c`, private groups `p`, direct messages `d`) with their members.
//!
//! Build a [`Seed`] in code with the `with_*` helpers, or load one from a YAML or JSON file
//! ([`Seed::from_file`]) for the standalone `acg-testkit fake-rocketchat --seed FILE`:
//!
//! ```yaml
//! users:
//!   - { username: bot, password: botpw, name: Gateway Bot, roles: [bot] }
//!   - { username: alice, password: alicepw, name: Alice }
//! rooms:
//!   - { name: dev, type: c, members: [alice, bot] }
//!   - { name: secret, type: p, members: [alice, bot] }
//!   - { type: d, members: [alice, bot] }
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the world starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Accounts, in creation order (MongoDB's natural order decides some list orders).
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Rooms, in creation order.
    #[serde(default)]
    pub rooms: Vec<SeedRoom>,
    /// Whether to create `#general` (id `GENERAL`, every user a member) like a fresh server
    /// does, unless the seed names a room `general` itself. Default: true.
    #[serde(default = "default_true")]
    pub general: bool,
}

fn default_true() -> bool {
    true
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            users: Vec::new(),
            rooms: Vec::new(),
            general: true,
        }
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Login name (`@username`).
    pub username: String,
    /// Plain password (REST login sends it as is; DDP login sends its SHA-256 hex digest).
    pub password: String,
    /// Display name (`u.name`); `None` leaves the field out like an account without one.
    #[serde(default)]
    pub name: Option<String>,
    /// Roles (`user`, `bot`, `admin`, …). Empty means `["user"]`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// A fixed `_id`; otherwise a random Meteor id.
    #[serde(default)]
    pub id: Option<String>,
    /// E-mail address (login by e-mail works with it). Default `<username>@example.invalid`.
    #[serde(default)]
    pub email: Option<String>,
}

impl SeedUser {
    /// A user with a username and password, display name = username, role `user`.
    pub fn new(username: &str, password: &str) -> Self {
        SeedUser {
            username: username.to_owned(),
            password: password.to_owned(),
            name: Some(username.to_owned()),
            roles: Vec::new(),
            id: None,
            email: None,
        }
    }

    /// Sets the display name.
    pub fn display_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds a role (e.g. `bot`, `admin`).
    pub fn role(mut self, role: &str) -> Self {
        self.roles.push(role.to_owned());
        self
    }

    /// Fixes the user's `_id`.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

/// The three room types a bot deals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoomKind {
    /// A public channel (`t: "c"`).
    #[serde(rename = "c", alias = "channel")]
    Channel,
    /// A private group (`t: "p"`).
    #[serde(rename = "p", alias = "group", alias = "private")]
    Group,
    /// A direct-message room (`t: "d"`).
    #[serde(rename = "d", alias = "dm", alias = "direct")]
    Direct,
}

impl RoomKind {
    /// The one-letter `t` value of the room document.
    pub fn letter(self) -> &'static str {
        match self {
            RoomKind::Channel => "c",
            RoomKind::Group => "p",
            RoomKind::Direct => "d",
        }
    }
}

/// One room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRoom {
    /// Room name (channels and groups; DMs have none).
    #[serde(default)]
    pub name: Option<String>,
    /// Room type.
    #[serde(rename = "type")]
    pub kind: RoomKind,
    /// Usernames of the members; the first one is the owner (`u`). A DM has exactly two
    /// (or one, a DM with oneself).
    #[serde(default)]
    pub members: Vec<String>,
    /// A fixed `_id`; otherwise random (DMs: the sorted member ids joined, as Rocket.Chat does).
    #[serde(default)]
    pub id: Option<String>,
    /// Room topic.
    #[serde(default)]
    pub topic: Option<String>,
}

impl SeedRoom {
    /// A public channel.
    pub fn channel(name: &str, members: &[&str]) -> Self {
        Self::named(RoomKind::Channel, name, members)
    }

    /// A private group.
    pub fn group(name: &str, members: &[&str]) -> Self {
        Self::named(RoomKind::Group, name, members)
    }

    /// A direct-message room between two users.
    pub fn direct(a: &str, b: &str) -> Self {
        SeedRoom {
            name: None,
            kind: RoomKind::Direct,
            members: vec![a.to_owned(), b.to_owned()],
            id: None,
            topic: None,
        }
    }

    fn named(kind: RoomKind, name: &str, members: &[&str]) -> Self {
        SeedRoom {
            name: Some(name.to_owned()),
            kind,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            id: None,
            topic: None,
        }
    }

    /// Fixes the room's `_id`.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

/// Why a seed could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid YAML/JSON.
    #[error("seed is not valid {format}: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// Parser message.
        message: String,
    },
    /// The document does not describe a seed (unknown field, wrong type, …).
    #[error("seed does not match the expected shape: {0}")]
    Shape(String),
    /// The seed contradicts itself (unknown member, duplicate name, bad DM).
    #[error("invalid seed: {0}")]
    Invalid(String),
}

impl Seed {
    /// An empty seed (only `#general`, which has no members until users are added).
    pub fn new() -> Self {
        Seed::default()
    }

    /// Adds a user.
    pub fn with_user(mut self, user: SeedUser) -> Self {
        self.users.push(user);
        self
    }

    /// Adds a room.
    pub fn with_room(mut self, room: SeedRoom) -> Self {
        self.rooms.push(room);
        self
    }

    /// Reads a seed file: `.json` is JSON, anything else YAML (which also accepts JSON).
    pub fn from_file(path: &Path) -> Result<Seed, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Seed::from_json_str(&text)
        } else {
            Seed::from_yaml_str(&text)
        }
    }

    /// Parses a JSON seed.
    pub fn from_json_str(text: &str) -> Result<Seed, SeedError> {
        let value: Value = serde_json::from_str(text).map_err(|e| SeedError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        serde_json::from_value(value).map_err(|e| SeedError::Shape(e.to_string()))
    }

    /// Parses a YAML seed.
    pub fn from_yaml_str(text: &str) -> Result<Seed, SeedError> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| SeedError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?;
        let value = match docs.first() {
            Some(doc) => yaml_to_json(doc)?,
            None => Value::Object(Default::default()),
        };
        serde_json::from_value(value).map_err(|e| SeedError::Shape(e.to_string()))
    }
}

/// Converts a parsed YAML node to JSON so serde can check the shape.
fn yaml_to_json(y: &yaml_rust2::Yaml) -> Result<Value, SeedError> {
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| SeedError::Shape(format!("bad number {r}")))?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(SeedError::Shape(format!("unsupported key {other:?}"))),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(SeedError::Shape("aliases are not supported".to_owned()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_seed_round_trips_to_the_same_struct_as_code() {
        let yaml = "users:\n  - { username: bot, password: pw, name: Bot, roles: [bot] }\n  - { username: alice, password: apw }\nrooms:\n  - { name: dev, type: c, members: [alice, bot] }\n  - { type: dm, members: [alice, bot] }\ngeneral: false\n";
        let seed = Seed::from_yaml_str(yaml).unwrap();
        assert_eq!(seed.users[0].roles, vec!["bot"]);
        assert_eq!(seed.users[1].name, None);
        assert_eq!(seed.rooms[1].kind, RoomKind::Direct);
        assert!(!seed.general);
        let json = serde_json::to_string(&seed).unwrap();
        assert_eq!(Seed::from_json_str(&json).unwrap(), seed);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Seed::from_yaml_str("users: []\nroomz: []\n").unwrap_err();
        assert!(matches!(err, SeedError::Shape(_)), "{err}");
    }
}
