//! The credential mix: which kinds of credential the load sends, in what proportions, and what a
//! correct server answers for each.
//!
//! This module only parses `--mix` and turns its weights into exact counts; it does not make
//! credentials (that is `pool`) and knows nothing of HTTP.

use std::fmt;

/// A kind of credential the load generator sends. The order is the order of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A key issued by the server and not revoked: answers `is_valid: true`.
    Valid,
    /// A well-formed key the server never issued (its checksum is made with another secret).
    Unknown,
    /// A key issued by the server and then revoked.
    Revoked,
    /// Something that is not a key at all, such as `"x"` or `""`.
    Malformed,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Valid, Class::Unknown, Class::Revoked, Class::Malformed];

    pub fn name(self) -> &'static str {
        match self {
            Class::Valid => "valid",
            Class::Unknown => "unknown",
            Class::Revoked => "revoked",
            Class::Malformed => "malformed",
        }
    }

    /// The `is_valid` a correct server answers for a credential of this class.
    pub fn expect_valid(self) -> bool {
        matches!(self, Class::Valid)
    }

    /// Position in [`Class::ALL`], for per-class counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the four classes, e.g. `valid=90,unknown=5,revoked=3,malformed=2`.
/// Weights need not sum to 100; a class left out has weight 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 4],
}

/// Largest weight accepted, so that sums and products of weights never overflow.
const MAX_WEIGHT: u32 = 1_000_000;

impl Mix {
    /// Parses `class=weight` pairs separated by commas. Every class at most once, weights are
    /// whole numbers, and at least one weight is positive.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights = [None::<u32>; 4];
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!("empty entry in mix {s:?}"));
            }
            let (name, weight) =
                part.split_once('=').ok_or_else(|| format!("mix entry {part:?} is not of the form class=weight"))?;
            let name = name.trim();
            let class = Class::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
                format!("unknown class {name:?} in mix (valid classes: valid, unknown, revoked, malformed)")
            })?;
            let weight = weight.trim();
            let weight: u32 =
                weight.parse().ok().filter(|w| *w <= MAX_WEIGHT).ok_or_else(|| {
                    format!("weight {weight:?} of {name} is not a whole number from 0 to {MAX_WEIGHT}")
                })?;
            if weights[class.index()].replace(weight).is_some() {
                return Err(format!("class {name:?} appears twice in mix"));
            }
        }
        let mix = Mix { weights: weights.map(|w| w.unwrap_or(0)) };
        if mix.total() == 0 {
            return Err(format!("mix {s:?} has no positive weight"));
        }
        Ok(mix)
    }

    pub fn weight(&self, class: Class) -> u32 {
        self.weights[class.index()]
    }

    pub fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// Splits `slots` credentials among the classes in proportion to the weights, by largest
    /// remainder, so the counts sum to exactly `slots` and each is within one of its share.
    pub fn apportion(&self, slots: u64) -> [u64; 4] {
        let total = self.total();
        let mut counts = [0u64; 4];
        let mut remainders = [(0u64, 0usize); 4];
        for (i, w) in self.weights.iter().enumerate() {
            let exact = u128::from(slots) * u128::from(*w);
            // Both fit: the quotient is at most `slots`, the remainder below `total`.
            counts[i] = (exact / u128::from(total)) as u64;
            remainders[i] = ((exact % u128::from(total)) as u64, i);
        }
        let left = slots - counts.iter().sum::<u64>();
        // Largest remainders first; ties go to the class listed first.
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in remainders.iter().take(left as usize) {
            counts[*i] += 1;
        }
        counts
    }
}

impl fmt::Display for Mix {
    /// `valid=90,unknown=5,revoked=3,malformed=2`, classes with weight 0 left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for class in Class::ALL {
            let w = self.weight(class);
            if w > 0 {
                write!(f, "{}{}={w}", if first { "" } else { "," }, class.name())?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<[u32; 4], &str>) {
        let got = Mix::parse(input).map(|m| m.weights);
        match expected {
            Ok(w) => assert_eq!(got, Ok(w), "{input:?}"),
            Err(fragment) => {
                let e = got.expect_err(input);
                assert!(e.contains(fragment), "{input:?}: error {e:?} does not mention {fragment:?}");
            }
        }
    }

    #[test]
    fn parses_mixes() {
        check("valid=90,unknown=5,revoked=3,malformed=2", Ok([90, 5, 3, 2]));
        check("valid=1", Ok([1, 0, 0, 0]));
        check("malformed=7, valid=3", Ok([3, 0, 0, 7]));
        check(" valid = 50 , revoked=50 ", Ok([50, 0, 50, 0]));
        check("valid=0,unknown=1", Ok([0, 1, 0, 0]));
        check("valid=1000000", Ok([1_000_000, 0, 0, 0]));
    }

    #[test]
    fn rejects_bad_mixes() {
        check("", Err("empty entry"));
        check("valid=90,", Err("empty entry"));
        check("valid", Err("not of the form class=weight"));
        check("bogus=1", Err("unknown class \"bogus\""));
        check("valid=-1", Err("not a whole number"));
        check("valid=1.5", Err("not a whole number"));
        check("valid=x", Err("not a whole number"));
        check("valid=1000001", Err("not a whole number"));
        check("valid=1,valid=2", Err("appears twice"));
        check("valid=0,revoked=0", Err("no positive weight"));
    }

    #[test]
    fn displays_as_parsed() {
        let mix = Mix::parse("malformed=2,valid=90,unknown=0").expect("parses");
        assert_eq!(mix.to_string(), "valid=90,malformed=2");
        assert_eq!(Mix::parse(&mix.to_string()), Ok(mix));
    }

    #[test]
    fn apportions_exactly() {
        let mix = Mix::parse("valid=90,unknown=5,revoked=3,malformed=2").expect("parses");
        assert_eq!(mix.apportion(100), [90, 5, 3, 2]);
        assert_eq!(mix.apportion(1000), [900, 50, 30, 20]);
        assert_eq!(mix.apportion(0), [0, 0, 0, 0]);
        let thirds = Mix::parse("valid=1,unknown=1,revoked=1").expect("parses");
        assert_eq!(thirds.apportion(10), [4, 3, 3, 0]);
        for slots in [1, 7, 99, 16_384, 1 << 20] {
            assert_eq!(mix.apportion(slots).iter().sum::<u64>(), slots, "{slots}");
        }
    }
}
