//! The discrete cell architecture found by a search, in DARTS' format.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Op};

/// Intermediate nodes per cell, as in DARTS.
pub const NODES: usize = 4;
/// Incoming edges kept per node in a derived cell.
pub const EDGES_PER_NODE: usize = 2;

/// The stride of an edge of a cell: 2 on the edges that read one of the two cell inputs of a
/// reduction cell (`from` 0 or 1), 1 elsewhere. The discrete network, the search supernet and
/// the ONNX lowering all take it from here.
pub fn edge_stride(reduction: bool, from: usize) -> usize {
    if reduction && from < 2 {
        2
    } else {
        1
    }
}

/// The file a genotype is kept in inside a folder (a search's run folder): a folder given
/// where a genotype is taken means this file in it.
pub const GENOTYPE_FILE: &str = "genotype.json";

/// Largest genotype file read, in bytes (a genotype takes about 500).
pub const MAX_GENOTYPE_BYTES: u64 = 64 * 1024;

/// One kept edge of a derived cell: the operation and the index of the state it reads
/// (0 and 1 are the cell's two inputs, 2.. the earlier intermediate nodes).
pub type Edge = (Op, usize);

/// A cell architecture pair, mirroring DARTS' `Genotype` namedtuple.
///
/// `normal[2 * i]` and `normal[2 * i + 1]` are the two edges into node `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genotype {
    /// Edges of the normal cell.
    pub normal: Vec<Edge>,
    /// States concatenated into the normal cell's output.
    pub normal_concat: Vec<usize>,
    /// Edges of the reduction cell.
    pub reduce: Vec<Edge>,
    /// States concatenated into the reduction cell's output.
    pub reduce_concat: Vec<usize>,
}

/// The names of the published genotypes shipped with the crate.
pub const PUBLISHED: [&str; 4] = ["DARTS_V1", "DARTS_V2", "PC_DARTS_cifar", "PDARTS"];

/// How a genotype argument names a random genotype: `random:SEED`.
pub const RANDOM_PREFIX: &str = "random:";

impl Genotype {
    /// Checks that each node has two edges from earlier states, no `none` op, and that the
    /// concat lists name existing intermediate nodes, each at most once.
    pub fn validate(&self) -> Result<(), Error> {
        for (cell, edges, concat) in [
            ("normal", &self.normal, &self.normal_concat),
            ("reduce", &self.reduce, &self.reduce_concat),
        ] {
            if edges.len() != NODES * EDGES_PER_NODE {
                return Err(Error::InvalidGenotype(format!(
                    "{cell} cell has {} edges, expected {}",
                    edges.len(),
                    NODES * EDGES_PER_NODE
                )));
            }
            for (k, &(op, from)) in edges.iter().enumerate() {
                let node = k / EDGES_PER_NODE;
                if op == Op::None {
                    return Err(Error::InvalidGenotype(format!(
                        "{cell} edge {k} uses the `none` op"
                    )));
                }
                if from >= node + 2 {
                    return Err(Error::InvalidGenotype(format!(
                        "{cell} edge {k} into node {} reads state {from}, which is not computed yet",
                        node + 2
                    )));
                }
            }
            if concat.is_empty() || concat.iter().any(|&s| !(2..NODES + 2).contains(&s)) {
                return Err(Error::InvalidGenotype(format!(
                    "{cell}_concat {concat:?} must name nodes 2..={}",
                    NODES + 1
                )));
            }
            if let Some(dup) = concat
                .iter()
                .enumerate()
                .find_map(|(i, s)| concat[..i].contains(s).then_some(s))
            {
                return Err(Error::InvalidGenotype(format!(
                    "{cell}_concat {concat:?} names node {dup} twice"
                )));
            }
        }
        Ok(())
    }

    /// One of the published genotypes listed in [`PUBLISHED`].
    pub fn published(name: &str) -> Result<Genotype, Error> {
        let json = match name {
            "DARTS_V1" => include_str!("../genotypes/DARTS_V1.json"),
            "DARTS_V2" => include_str!("../genotypes/DARTS_V2.json"),
            "PC_DARTS_cifar" => include_str!("../genotypes/PC_DARTS_cifar.json"),
            "PDARTS" => include_str!("../genotypes/PDARTS.json"),
            _ => {
                return Err(Error::InvalidGenotype(format!(
                    "no published genotype named {name:?} (known: {})",
                    PUBLISHED.join(", ")
                )))
            }
        };
        Genotype::from_json(json)
    }

    /// A genotype drawn uniformly from the search space, the sanity baseline of architecture
    /// search (Li and Talwalkar, 2019; DARTS' own random baseline): for each node of each cell
    /// two distinct earlier states and, for each of its two edges, one of the seven operations
    /// other than `none`; every node concatenated. The same `seed` gives the same genotype.
    pub fn random(seed: u64) -> Genotype {
        use rand::seq::IndexedRandom;
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ops: Vec<Op> = Op::ALL.into_iter().filter(|&op| op != Op::None).collect();
        let mut cell = || -> Vec<Edge> {
            (0..NODES)
                .flat_map(|node| {
                    let inputs = rand::seq::index::sample(&mut rng, node + 2, EDGES_PER_NODE);
                    let mut inputs = inputs.into_vec();
                    inputs.sort_unstable();
                    inputs
                        .into_iter()
                        .map(|from| (*ops.choose(&mut rng).expect("seven ops"), from))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let normal = cell();
        let reduce = cell();
        let concat: Vec<usize> = (2..NODES + 2).collect();
        Genotype {
            normal,
            normal_concat: concat.clone(),
            reduce,
            reduce_concat: concat,
        }
    }

    /// Parses and validates the JSON form.
    pub fn from_json(json: &str) -> Result<Genotype, Error> {
        let genotype: Genotype = serde_json::from_str(json)
            .map_err(|e| Error::InvalidGenotype(format!("bad genotype JSON: {e}")))?;
        genotype.validate()?;
        Ok(genotype)
    }

    /// Reads a genotype file in JSON or DARTS' Python notation: a regular file of at most
    /// [`MAX_GENOTYPE_BYTES`] of UTF-8.
    pub fn read(path: &Path) -> Result<Genotype, Error> {
        let invalid =
            |reason: String| Error::InvalidGenotype(format!("{}: {reason}", path.display()));
        // Checked before opening: opening a FIFO would wait for a writer.
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_GENOTYPE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        if bytes.len() as u64 > MAX_GENOTYPE_BYTES {
            return Err(invalid(format!(
                "larger than {MAX_GENOTYPE_BYTES} bytes: not a genotype file"
            )));
        }
        let text =
            String::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8 text ({e})")))?;
        let parsed = if text.trim_start().starts_with('{') {
            Genotype::from_json(&text)
        } else {
            text.parse()
        };
        parsed.map_err(|e| Error::InvalidGenotype(format!("{}: {e}", path.display())))
    }

    /// Resolves a genotype argument: a published name, `random:SEED` ([`Genotype::random`]),
    /// a run folder holding `genotype.json`, or a genotype file.
    pub fn resolve(spec: &str) -> Result<Genotype, Error> {
        if PUBLISHED.contains(&spec) {
            return Genotype::published(spec);
        }
        if let Some(seed) = spec.strip_prefix(RANDOM_PREFIX) {
            let seed = seed.parse::<u64>().map_err(|_| {
                Error::InvalidGenotype(format!(
                    "{spec:?}: a random genotype is random:SEED with SEED a whole number from 0 to {}",
                    u64::MAX
                ))
            })?;
            return Ok(Genotype::random(seed));
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Genotype::read(&path.join(GENOTYPE_FILE));
        }
        Genotype::read(path)
    }

    /// The pretty JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genotype serialises")
    }

    /// DARTS' Python notation, as printed by its search scripts.
    pub fn to_python(&self) -> String {
        self.to_string()
    }

    /// Operations of the normal cell without weights (pools and skip connections, all at
    /// stride 1 there): the count that grows when a DARTS-family search collapses.
    pub fn parameter_free_normal_ops(&self) -> usize {
        self.normal
            .iter()
            .filter(|(op, _)| !op.is_parametric())
            .count()
    }

    /// The edges and concat list of one cell type.
    pub fn cell(&self, reduction: bool) -> (&[Edge], &[usize]) {
        if reduction {
            (&self.reduce, &self.reduce_concat)
        } else {
            (&self.normal, &self.normal_concat)
        }
    }
}

impl fmt::Display for Genotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn edges(edges: &[Edge]) -> String {
            let items: Vec<String> = edges
                .iter()
                .map(|(op, from)| format!("('{op}', {from})"))
                .collect();
            format!("[{}]", items.join(", "))
        }
        fn concat(list: &[usize]) -> String {
            let items: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            format!("[{}]", items.join(", "))
        }
        write!(
            f,
            "Genotype(normal={}, normal_concat={}, reduce={}, reduce_concat={})",
            edges(&self.normal),
            concat(&self.normal_concat),
            edges(&self.reduce),
            concat(&self.reduce_concat)
        )
    }
}

impl FromStr for Genotype {
    type Err = Error;

    /// Parses DARTS' Python notation, e.g.
    /// `Genotype(normal=[('sep_conv_3x3', 1), ...], normal_concat=range(2, 6), ...)`.
    /// A leading `NAME = ` is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let genotype = PythonParser::new(s).genotype()?;
        genotype.validate()?;
        Ok(genotype)
    }
}

/// A small recursive-descent parser for the Python genotype notation.
struct PythonParser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> PythonParser<'a> {
    fn new(text: &'a str) -> Self {
        PythonParser { text, pos: 0 }
    }

    fn error(&self, what: &str) -> Error {
        let rest: String = self.text[self.pos..].chars().take(30).collect();
        Error::InvalidGenotype(format!(
            "Python notation: expected {what} at byte {} (near {rest:?})",
            self.pos
        ))
    }

    fn skip_ws(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), Error> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("`{token}`")))
        }
    }

    fn ident(&mut self) -> Result<&'a str, Error> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("a name"));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn number(&mut self) -> Result<usize, Error> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value = rest[..len].parse().map_err(|_| self.error("a number"))?;
        self.pos += len;
        Ok(value)
    }

    fn string(&mut self) -> Result<&'a str, Error> {
        self.skip_ws();
        let quote = match self.text[self.pos..].chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("a quoted op name")),
        };
        self.pos += 1;
        let rest = &self.text[self.pos..];
        let end = rest
            .find(quote)
            .ok_or_else(|| self.error("a closing quote"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// An edge list, refused as soon as it holds more edges than a cell has.
    fn edges(&mut self) -> Result<Vec<Edge>, Error> {
        self.expect("[")?;
        let mut edges = Vec::new();
        while !self.eat("]") {
            if edges.len() == NODES * EDGES_PER_NODE {
                return Err(self.error(&format!("`]` after {} edges", NODES * EDGES_PER_NODE)));
            }
            self.expect("(")?;
            let op: Op = self.string()?.parse()?;
            self.expect(",")?;
            let from = self.number()?;
            self.expect(")")?;
            edges.push((op, from));
            if !self.eat(",") {
                self.expect("]")?;
                break;
            }
        }
        Ok(edges)
    }

    /// A concat list or `range(a, b)`, refused as soon as it names more states than a cell
    /// has intermediate nodes.
    fn concat(&mut self) -> Result<Vec<usize>, Error> {
        if self.eat("range") {
            self.expect("(")?;
            let start = self.number()?;
            self.expect(",")?;
            let end = self.number()?;
            self.expect(")")?;
            if end.saturating_sub(start) > NODES {
                return Err(Error::InvalidGenotype(format!(
                    "Python notation: range({start}, {end}) names more than the {NODES} nodes of a cell"
                )));
            }
            return Ok((start..end).collect());
        }
        self.expect("[")?;
        let mut list = Vec::new();
        while !self.eat("]") {
            if list.len() == NODES {
                return Err(self.error(&format!("`]` after {NODES} concatenated nodes")));
            }
            list.push(self.number()?);
            if !self.eat(",") {
                self.expect("]")?;
                break;
            }
        }
        Ok(list)
    }

    fn genotype(&mut self) -> Result<Genotype, Error> {
        let first = self.ident()?;
        if first != "Genotype" {
            self.expect("=")?;
            if self.ident()? != "Genotype" {
                return Err(self.error("`Genotype(`"));
            }
        }
        self.expect("(")?;
        let (mut normal, mut normal_concat, mut reduce, mut reduce_concat) =
            (None, None, None, None);
        while !self.eat(")") {
            let field = self.ident()?;
            self.expect("=")?;
            let duplicate = match field {
                "normal" => normal.replace(self.edges()?).is_some(),
                "reduce" => reduce.replace(self.edges()?).is_some(),
                "normal_concat" => normal_concat.replace(self.concat()?).is_some(),
                "reduce_concat" => reduce_concat.replace(self.concat()?).is_some(),
                other => {
                    return Err(Error::InvalidGenotype(format!(
                        "Python notation: unknown field `{other}`"
                    )))
                }
            };
            if duplicate {
                return Err(Error::InvalidGenotype(format!(
                    "Python notation: field `{field}` given twice"
                )));
            }
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        self.skip_ws();
        if self.pos < self.text.len() {
            return Err(self.error("the end of the text after `Genotype(...)`"));
        }
        let missing = |name: &str| Error::InvalidGenotype(format!("missing field `{name}`"));
        Ok(Genotype {
            normal: normal.ok_or_else(|| missing("normal"))?,
            normal_concat: normal_concat.ok_or_else(|| missing("normal_concat"))?,
            reduce: reduce.ok_or_else(|| missing("reduce"))?,
            reduce_concat: reduce_concat.ok_or_else(|| missing("reduce_concat"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_genotypes_are_valid_reproducible_and_varied() {
        let drawn: Vec<Genotype> = (0..200).map(Genotype::random).collect();
        for g in &drawn {
            g.validate().unwrap();
            for edges in [&g.normal, &g.reduce] {
                for pair in edges.chunks(EDGES_PER_NODE) {
                    assert_ne!(pair[0].1, pair[1].1, "two distinct inputs per node: {g}");
                }
            }
        }
        assert_eq!(Genotype::random(7), Genotype::random(7));
        assert_eq!(Genotype::resolve("random:7").unwrap(), Genotype::random(7));
        let distinct: std::collections::BTreeSet<String> =
            drawn.iter().map(|g| g.to_string()).collect();
        assert_eq!(distinct.len(), drawn.len());
        // Every non-`none` op and every state the last node may read appears somewhere.
        let edges: Vec<Edge> = drawn.iter().flat_map(|g| g.normal.clone()).collect();
        for op in Op::ALL.into_iter().filter(|&op| op != Op::None) {
            assert!(edges.iter().any(|e| e.0 == op), "{op:?} never drawn");
        }
        let last_inputs: std::collections::BTreeSet<usize> = drawn
            .iter()
            .flat_map(|g| g.normal[(NODES - 1) * EDGES_PER_NODE..].iter().map(|e| e.1))
            .collect();
        assert_eq!(last_inputs.len(), NODES + 1);
        for bad in [
            "random:",
            "random:x",
            "random:-1",
            "random:18446744073709551616",
        ] {
            let err = Genotype::resolve(bad).unwrap_err().to_string();
            assert!(err.contains("random:SEED"), "{bad}: {err}");
        }
    }

    const DARTS_V2: &str = "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";
    const PDARTS: &str = "PDARTS = Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))";

    #[test]
    fn python_notation_matches_shipped_json() {
        assert_eq!(
            DARTS_V2.parse::<Genotype>().unwrap(),
            Genotype::published("DARTS_V2").unwrap()
        );
        assert_eq!(
            Genotype::published("DARTS_V2")
                .unwrap()
                .parameter_free_normal_ops(),
            2
        );
        assert_eq!(
            PDARTS.parse::<Genotype>().unwrap(),
            Genotype::published("PDARTS").unwrap()
        );
    }

    #[test]
    fn all_published_round_trip_through_python_and_json() {
        for name in PUBLISHED {
            let genotype = Genotype::published(name).unwrap();
            let python = genotype.to_python();
            assert_eq!(python.parse::<Genotype>().unwrap(), genotype, "{name}");
            assert_eq!(Genotype::from_json(&genotype.to_json()).unwrap(), genotype);
        }
    }

    #[test]
    fn bad_genotypes_are_refused_with_reason() {
        let unknown = DARTS_V2.replace("dil_conv_3x3", "conv_7x1_1x7");
        let err = unknown.parse::<Genotype>().unwrap_err().to_string();
        assert!(err.contains("conv_7x1_1x7"), "{err}");

        let forward = DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)");
        let err = forward.parse::<Genotype>().unwrap_err().to_string();
        assert!(err.contains("not computed yet"), "{err}");

        let err = Genotype::published("NASNet").unwrap_err().to_string();
        assert!(err.contains("NASNet"), "{err}");
        assert!("Genotype(normal=[".parse::<Genotype>().is_err());
    }

    fn refused(text: &str, needle: &str) {
        let err = match text.trim_start().starts_with('{') {
            true => Genotype::from_json(text),
            false => text.parse::<Genotype>(),
        }
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }

    #[test]
    fn the_whole_text_is_one_genotype_or_it_is_refused() {
        refused(&format!("{DARTS_V2} trailing"), "end of the text");
        refused(
            &format!("{DARTS_V2}\nPDARTS = Genotype()"),
            "end of the text",
        );
        let twice = DARTS_V2.replace(
            "reduce_concat=[2, 3, 4, 5]",
            "reduce_concat=[2, 3, 4, 5], normal_concat=[2, 3]",
        );
        refused(&twice, "`normal_concat` given twice");
        let json = Genotype::published("DARTS_V2").unwrap().to_json();
        refused(
            &json.replacen('{', "{\"extra\": 1, ", 1),
            "unknown field `extra`",
        );
        refused(&format!("{json} {{}}"), "trailing characters");
    }

    #[test]
    fn counts_are_bounded_before_anything_is_allocated() {
        // A range of 2^64 states would take all memory if collected.
        let huge = DARTS_V2.replace(
            "normal_concat=[2, 3, 4, 5]",
            &format!("normal_concat=range(0, {})", usize::MAX),
        );
        refused(&huge, "more than the 4 nodes");
        let long = DARTS_V2.replace(
            "normal_concat=[2, 3, 4, 5]",
            "normal_concat=[2, 3, 4, 5, 2]",
        );
        refused(&long, "after 4 concatenated nodes");
        let edges = DARTS_V2.replace(
            "('dil_conv_3x3', 2)]",
            "('dil_conv_3x3', 2), ('skip_connect', 0)]",
        );
        refused(&edges, "after 8 edges");
        let big_index = DARTS_V2.replace(
            "('dil_conv_3x3', 2)",
            "('dil_conv_3x3', 99999999999999999999999)",
        );
        refused(&big_index, "expected a number");
        let dup = DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 3, 5]");
        refused(&dup, "names node 3 twice");
        let few = DARTS_V2.replace(", ('dil_conv_3x3', 2)]", "]");
        refused(&few, "has 7 edges, expected 8");
    }

    #[cfg(unix)]
    #[test]
    fn only_small_regular_text_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("genotype.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening a FIFO without a writer would block forever.
        let err = Genotype::read(&fifo).unwrap_err().to_string();
        assert!(
            err.contains("not a regular file") && err.contains("genotype.json"),
            "{err}"
        );
        let err = Genotype::read(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");

        let big = dir.path().join("big.txt");
        let mut text = DARTS_V2.to_string();
        text.push_str(&" ".repeat(MAX_GENOTYPE_BYTES as usize));
        std::fs::write(&big, text).unwrap();
        let err = Genotype::read(&big).unwrap_err().to_string();
        assert!(
            err.contains("larger than") && err.contains("big.txt"),
            "{err}"
        );

        let binary = dir.path().join("binary.txt");
        std::fs::write(&binary, [0xff, 0xfe, b'G']).unwrap();
        let err = Genotype::read(&binary).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");

        let fine = dir.path().join("fine.txt");
        std::fs::write(&fine, format!("{DARTS_V2}\n")).unwrap();
        assert_eq!(
            Genotype::read(&fine).unwrap(),
            Genotype::published("DARTS_V2").unwrap()
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use super::DARTS_V2;

        /// A valid cell: two edges per node from earlier states, a non-empty set of
        /// distinct intermediate nodes concatenated (in any order).
        fn cell() -> impl Strategy<Value = (Vec<Edge>, Vec<usize>)> {
            let op = proptest::sample::select(&Op::ALL[1..]);
            let edges = (0..NODES * EDGES_PER_NODE)
                .map(|k| (op.clone(), 0..k / EDGES_PER_NODE + 2))
                .collect::<Vec<_>>();
            let concat = Just((2..NODES + 2).collect::<Vec<usize>>())
                .prop_shuffle()
                .prop_flat_map(|all| (1..=NODES).prop_map(move |n| all[..n].to_vec()));
            (edges, concat)
        }

        fn genotype() -> impl Strategy<Value = Genotype> {
            (cell(), cell()).prop_map(|((normal, normal_concat), (reduce, reduce_concat))| {
                Genotype {
                    normal,
                    normal_concat,
                    reduce,
                    reduce_concat,
                }
            })
        }

        /// Text near the notation: its tokens and a few others, in any order.
        fn notation_like() -> impl Strategy<Value = String> {
            let token = proptest::sample::select(vec![
                "Genotype",
                "(",
                ")",
                "[",
                "]",
                ",",
                "=",
                " ",
                "'",
                "\"",
                "normal",
                "reduce",
                "normal_concat",
                "reduce_concat",
                "range",
                "sep_conv_3x3",
                "none",
                "0",
                "2",
                "5",
                "99999999999999999999",
                "{",
                "}",
                ":",
                "é",
                "\u{0}",
            ]);
            proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
        }

        /// Checks a parse result: an accepted genotype is a valid one.
        fn accepted_is_valid(parsed: Result<Genotype, Error>) {
            if let Ok(g) = parsed {
                g.validate().unwrap();
            }
        }

        proptest! {
            #[test]
            fn round_trips_through_python_and_json(g in genotype()) {
                prop_assert_eq!(&g.to_python().parse::<Genotype>().unwrap(), &g);
                prop_assert_eq!(&Genotype::from_json(&g.to_json()).unwrap(), &g);
            }

            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
                accepted_is_valid(text.parse());
                accepted_is_valid(Genotype::from_json(&text));
            }

            #[test]
            fn notation_like_text_never_panics(text in notation_like()) {
                accepted_is_valid(text.parse());
                accepted_is_valid(Genotype::from_json(&text));
            }

            #[test]
            fn edited_genotypes_never_panic(
                g in genotype(),
                at in any::<proptest::sample::Index>(),
                cut in 0usize..8,
                insert in "\\PC{0,4}",
            ) {
                for text in [g.to_python(), g.to_json(), DARTS_V2.to_string()] {
                    let chars: Vec<char> = text.chars().collect();
                    let i = at.index(chars.len());
                    let end = (i + cut).min(chars.len());
                    let edited: String = chars[..i]
                        .iter()
                        .chain(insert.chars().collect::<Vec<_>>().iter())
                        .chain(&chars[end..])
                        .collect();
                    accepted_is_valid(edited.parse());
                    accepted_is_valid(Genotype::from_json(&edited));
                }
            }
        }
    }
}
