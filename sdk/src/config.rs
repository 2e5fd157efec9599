//! Helpers for filter configurations.

/// Durations written as `250ms`, `5s`, `1m`, `2h`, `500us` (or a bare number of
/// milliseconds), for serde's `with`:
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config {
///     #[serde(with = "weft_sdk::config::duration")]
///     timeout: std::time::Duration,
/// }
/// let c: Config = serde_json::from_str(r#"{"timeout": "250ms"}"#).unwrap();
/// assert_eq!(c.timeout.as_millis(), 250);
/// ```
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses `250ms`, `1.5s`, `5s`, `1m`, `2h`, `500us`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}; write it as 250ms, 5s or 1m"))?;
        let secs = match unit.trim() {
            "us" | "µs" => n / 1e6,
            "ms" | "" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            other => {
                return Err(format!(
                    "unknown duration unit {other:?} in {text:?}; use us, ms, s, m or h"
                ))
            }
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("invalid duration {text:?}"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// For `#[serde(with = "weft_sdk::config::duration")]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// For `#[serde(with = "weft_sdk::config::duration")]`: writes milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Optional durations: `#[serde(default, with = "weft_sdk::config::duration::option")]`.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Deserializes an optional duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Duration);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }

        /// Serializes an optional duration as milliseconds.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&(d.as_millis() as u64)),
                None => s.serialize_none(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn units_parse() {
            assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
            assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
            assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
            assert_eq!(parse("500us"), Ok(Duration::from_micros(500)));
            assert_eq!(parse("40"), Ok(Duration::from_millis(40)));
            assert!(parse("soon").is_err());
            assert!(parse("5 parsecs")
                .unwrap_err()
                .contains("unknown duration unit"));
        }
    }
}

/// Sizes written as `4096`, `512KiB`, `16MiB`, `1GiB`, `10KB` or `10MB`, for serde's
/// `with`.
pub mod size {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses a size.
    pub fn parse(text: &str) -> Result<u64, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {text:?}; write it as 4096, 512KiB or 16MiB"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => return Err(format!("unknown size unit {other:?} in {text:?}")),
        };
        n.checked_mul(mult)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }

    /// For `#[serde(with = "weft_sdk::config::size")]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(n),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// For `#[serde(with = "weft_sdk::config::size")]`: writes bytes.
    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn units_parse() {
            assert_eq!(super::parse("64KiB"), Ok(64 << 10));
            assert_eq!(super::parse("10MB"), Ok(10_000_000));
            assert_eq!(super::parse("7"), Ok(7));
            assert!(super::parse("lots").is_err());
        }
    }
}
