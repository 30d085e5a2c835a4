//! What a row of `series.csv` or a histogram of the interval logs is about: its tag, typed.
//! On disk a tag is text (`all`, `step:3`, `journey:0`, `instance:backend-1`,
//! `generator_lag`, and `failed:` before `all` or a step for failed requests' latency);
//! everything that writes or reads the run directory goes through this type.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Tag {
    /// Every request of the run.
    All,
    /// One step's requests, by its global index.
    Step(usize),
    /// One journey's iterations, by its index.
    Journey(usize),
    /// The requests one backend instance served (from its response header).
    Instance(String),
    /// The arrivals' lateness (histograms only).
    GeneratorLag,
    /// Failed requests' latency of a scope (`All` or a `Step`; histograms only).
    Failed(Box<Tag>),
}

impl Tag {
    /// The tag a text names; `None` for one loadgen does not write.
    pub(crate) fn parse(text: &str) -> Option<Tag> {
        let index = |rest: &str| rest.parse::<usize>().ok();
        Some(match text {
            "all" => Tag::All,
            "generator_lag" => Tag::GeneratorLag,
            _ => {
                let (kind, rest) = text.split_once(':')?;
                match kind {
                    "step" => Tag::Step(index(rest)?),
                    "journey" => Tag::Journey(index(rest)?),
                    "instance" if !rest.is_empty() => Tag::Instance(rest.to_string()),
                    "failed" => match Tag::parse(rest)? {
                        scope @ (Tag::All | Tag::Step(_)) => Tag::Failed(Box::new(scope)),
                        _ => return None,
                    },
                    _ => return None,
                }
            }
        })
    }

    /// Failed requests' latency of this scope.
    pub(crate) fn failed(self) -> Tag {
        Tag::Failed(Box::new(self))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::All => f.write_str("all"),
            Tag::Step(index) => write!(f, "step:{index}"),
            Tag::Journey(index) => write!(f, "journey:{index}"),
            Tag::Instance(name) => write!(f, "instance:{name}"),
            Tag::GeneratorLag => f.write_str("generator_lag"),
            Tag::Failed(scope) => write!(f, "failed:{scope}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tag;

    #[test]
    fn every_tag_reads_back_as_written_and_others_are_refused() {
        for tag in [
            Tag::All,
            Tag::Step(3),
            Tag::Journey(0),
            Tag::Instance("backend-1".into()),
            Tag::GeneratorLag,
            Tag::All.failed(),
            Tag::Step(12).failed(),
        ] {
            assert_eq!(Tag::parse(&tag.to_string()), Some(tag));
        }
        for text in [
            "",
            "step:",
            "step:x",
            "instance:",
            "failed:journey:1",
            "lag",
            "all:1",
        ] {
            assert_eq!(Tag::parse(text), None, "{text}");
        }
    }
}
