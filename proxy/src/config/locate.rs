//! Finds the line and column of a field in a YAML document, so that errors found after
//! parsing (a missing cluster, a filter module that does not load) point at the line
//! that caused them, as parse errors do.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Field paths (`listeners[0].routes[1].cluster`) and where their values start.
#[derive(Debug, Default)]
pub struct Locations {
    positions: HashMap<String, (usize, usize)>,
}

impl Locations {
    /// Indexes a document. A document that does not parse gives an empty index (the
    /// parse error is reported by the deserializer, with its own position).
    pub fn index(source: &str) -> Locations {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut walker, false).is_err() {
            return Locations::default();
        }
        Locations {
            positions: walker.positions,
        }
    }

    /// The (line, column) of the value at exactly `path`, if the document has it.
    pub fn find_exact(&self, path: &str) -> Option<(usize, usize)> {
        if path.is_empty() {
            return None;
        }
        self.positions.get(path).copied()
    }

    /// The (line, column) of the value at `path`, both from 1. When the path itself is
    /// absent (a missing field), the nearest enclosing field that is present.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    /// `first`: no key seen yet (a block map is located at its first key: the parser's
    /// mark for its start is past that key).
    Map {
        path: String,
        key: Option<String>,
        first: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Walker {
    /// The path of the value that starts now, if a value (not a map key) starts now.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.positions
            .entry(path.to_owned())
            .or_insert((mark.line(), mark.col() + 1));
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    key: key @ None,
                    first,
                    path,
                }) = self.stack.last_mut()
                {
                    *key = Some(value);
                    if std::mem::take(first) {
                        let at = (mark.line(), mark.col() + 1);
                        let path = path.clone();
                        self.positions.insert(path, at);
                    }
                    return;
                }
                if let Some(path) = self.value_path() {
                    self.record(&path, mark);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.value_path() {
                    self.record(&path, mark);
                }
            }
            Event::MappingStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    first: true,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
listeners:
  - name: edge
    address: 127.0.0.1:8080
    routes:
      - match: { prefix: /api }
        cluster: api
clusters:
  api:
    endpoints: [127.0.0.1:9000, 127.0.0.1:9001]
";

    #[test]
    fn finds_nested_fields_by_path() {
        let l = Locations::index(DOC);
        assert_eq!(l.find("listeners[0].address").map(|p| p.0), Some(3));
        assert_eq!(
            l.find("listeners[0].routes[0].cluster").map(|p| p.0),
            Some(6)
        );
        assert_eq!(
            l.find("listeners[0].routes[0].match.prefix").map(|p| p.0),
            Some(5)
        );
        assert_eq!(l.find("clusters.api.endpoints[1]").map(|p| p.0), Some(9));
        // A missing field points at the start of the map that lacks it.
        assert_eq!(l.find("listeners[0].routes[0].timeout"), Some((5, 9)));
        assert_eq!(l.find("listeners[0].port"), Some((2, 5)));
    }

    #[test]
    fn missing_fields_point_at_their_parent() {
        let l = Locations::index(DOC);
        assert_eq!(
            l.find("listeners[0].routes[0].timeout").map(|p| p.0),
            Some(5)
        );
        assert_eq!(l.find("clusters.api.protocol").map(|p| p.0), Some(9));
    }

    #[test]
    fn columns_count_from_one() {
        let l = Locations::index("a:\n  b: x\n");
        assert_eq!(l.find("a.b"), Some((2, 6)));
    }
}
