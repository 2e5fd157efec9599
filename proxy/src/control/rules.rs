//! Which bundle each proxy gets: rules of a selector and a bundle version, with the
//! versions each rule had before, for rollback.
//!
//! A proxy gets the bundle of the most specific rule that selects it (the one with the
//! most conditions; the empty selector, "all proxies", is the least specific). A staged
//! rollout is a rule for a labelled subset (the canary), then the rule for all, then
//! removing the canary's rule (or rolling it back).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Hello;

/// Which proxies a rule is for: all conditions given must hold; none given is all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Selector {
    /// Labels the proxy must carry, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The proxy's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The proxy's service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Selector {
    /// Whether it selects the proxy that said `hello`.
    pub fn selects(&self, hello: &Hello) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| hello.labels.get(k) == Some(v))
            && self.name.as_ref().is_none_or(|n| *n == hello.name)
            && self
                .service
                .as_ref()
                .is_none_or(|s| hello.service.as_ref() == Some(s))
    }

    fn conditions(&self) -> usize {
        self.labels.len() + usize::from(self.name.is_some()) + usize::from(self.service.is_some())
    }

    /// `all`, or the conditions as `k=v,name=..,service=..`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(n) = &self.name {
            parts.push(format!("name={n}"));
        }
        if let Some(s) = &self.service {
            parts.push(format!("service={s}"));
        }
        if parts.is_empty() {
            "all".into()
        } else {
            parts.join(",")
        }
    }
}

/// A rule: the proxies it selects run `bundle`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rule {
    /// Which proxies.
    pub selector: Selector,
    /// The bundle version they get.
    pub bundle: String,
    /// Earlier versions of this rule, oldest first.
    #[serde(default)]
    pub history: Vec<String>,
}

/// All rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rules {
    /// In the order they were made.
    pub rules: Vec<Rule>,
}

impl Rules {
    /// The version assigned to a proxy, if any rule selects it.
    pub fn assigned(&self, hello: &Hello) -> Option<&str> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.selector.selects(hello))
            .max_by_key(|(i, r)| (r.selector.conditions(), *i))
            .map(|(_, r)| r.bundle.as_str())
    }

    /// Assigns `bundle` to the proxies `selector` selects (a new rule, or a new
    /// version of the rule with that selector).
    pub fn roll_out(&mut self, selector: Selector, bundle: String) {
        match self.rules.iter_mut().find(|r| r.selector == selector) {
            Some(r) if r.bundle == bundle => {}
            Some(r) => {
                let old = std::mem::replace(&mut r.bundle, bundle);
                r.history.push(old);
            }
            None => self.rules.push(Rule {
                selector,
                bundle,
                history: Vec::new(),
            }),
        }
    }

    /// Puts the rule of `selector` back to its previous version; a rule with no
    /// previous version is removed (its proxies fall back to less specific rules).
    /// Returns the version now in force for that rule, if it remains.
    pub fn roll_back(&mut self, selector: &Selector) -> Result<Option<String>, String> {
        let i = self
            .rules
            .iter()
            .position(|r| r.selector == *selector)
            .ok_or_else(|| format!("no rule for {}", selector.describe()))?;
        match self.rules[i].history.pop() {
            Some(prev) => {
                self.rules[i].bundle = prev.clone();
                Ok(Some(prev))
            }
            None => {
                self.rules.remove(i);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(name: &str, labels: &[(&str, &str)]) -> Hello {
        Hello {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service: Some("shop".into()),
            version: None,
        }
    }

    fn canary() -> Selector {
        Selector {
            labels: [("track".to_string(), "canary".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_staged_rollout_and_its_rollback() {
        let (p1, p2) = (proxy("p1", &[("track", "canary")]), proxy("p2", &[]));
        let mut r = Rules::default();
        assert_eq!(r.assigned(&p1), None);
        r.roll_out(Selector::default(), "v1".into());
        assert_eq!((r.assigned(&p1), r.assigned(&p2)), (Some("v1"), Some("v1")));
        // Canary first: the more specific rule wins for p1 only.
        r.roll_out(canary(), "v2".into());
        assert_eq!((r.assigned(&p1), r.assigned(&p2)), (Some("v2"), Some("v1")));
        // Then all.
        r.roll_out(Selector::default(), "v2".into());
        assert_eq!(r.assigned(&p2), Some("v2"));
        // Rolling back "all" returns p2 to v1; p1 keeps its canary rule.
        assert_eq!(
            r.roll_back(&Selector::default()).unwrap(),
            Some("v1".into())
        );
        assert_eq!((r.assigned(&p1), r.assigned(&p2)), (Some("v2"), Some("v1")));
        // Rolling back the canary rule removes it: p1 follows "all" again.
        assert_eq!(r.roll_back(&canary()).unwrap(), None);
        assert_eq!(r.assigned(&p1), Some("v1"));
        assert!(r.roll_back(&canary()).is_err());
    }

    #[test]
    fn selectors_match_name_service_and_labels() {
        let p = proxy("p1", &[("zone", "a")]);
        let by_name = Selector {
            name: Some("p1".into()),
            ..Default::default()
        };
        let by_service = Selector {
            service: Some("shop".into()),
            ..Default::default()
        };
        let other = Selector {
            service: Some("cart".into()),
            ..Default::default()
        };
        assert!(by_name.selects(&p) && by_service.selects(&p) && !other.selects(&p));
        assert_eq!(by_name.describe(), "name=p1");
        assert_eq!(Selector::default().describe(), "all");
    }
}
