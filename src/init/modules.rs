//! Kernel-module loading for PID 1: a small `modprobe` that reads the index files `depmod`
//! writes into `/lib/modules/$(uname -r)` and loads modules with `finit_module(2)`.
//!
//! Owns: parsing `modules.dep`, `modules.alias`, `modules.softdep`, `modules.builtin` and
//! `modules.builtin.modinfo` ([`ModuleIndex`]); turning an alias into module names
//! ([`ModuleIndex::resolve`]); ordering a load ([`ModuleIndex::load_plan`]); coldplug over sysfs
//! ([`coldplug`]); and single requests ([`load_by_name`]). The actual load is a callback, so
//! everything except [`finit_module`] runs in tests on temp dirs.
//!
//! Names: a module's name is its file stem without `.ko`/`.ko.xz`/`.ko.zst`/`.ko.gz`, with `-`
//! replaced by `_` (the kernel's own spelling in `/proc/modules`). Aliases are normalised the
//! way kmod does (`alias_normalize()`): `-` becomes `_` except inside `[...]`, on both the
//! pattern and the looked-up string, so `fs-vfat` and `fs_vfat` are the same alias.
//!
//! Lookup order follows kmod's `kmod_module_new_from_lookup()`: a module name from
//! `modules.dep` or `modules.builtin` first, then every matching `modules.alias` pattern, then
//! builtin aliases from `modules.builtin.modinfo`. Patterns are `fnmatch(3)` globs without
//! flags: `*`, `?`, `[...]` with ranges and `!`/`^` negation, and `\` escapes. POSIX named
//! classes (`[[:alpha:]]`) are not supported; depmod never emits them.
//!
//! Softdeps: like kmod, `softdep M pre: A post: B` loads the modules A resolves to before M and
//! the ones B resolves to after it; names before the first `pre:`/`post:` are ignored (Debian
//! 6.1 has such lines for cifs). A softdep is best effort: its failure does not stop M. A
//! `modules.dep` dependency is hard: when it fails, every module that needs it is skipped.
//!
//! Bounds: index files are read up to [`MAX_INDEX_BYTES`], malformed lines are ignored, plans
//! recurse at most [`MAX_PLAN_DEPTH`] levels and break cycles, the sysfs walk never follows
//! symlinks and stops at [`MAX_SYSFS_DEPTH`], and coldplug makes at most [`MAX_PASSES`] passes.

use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest prefix of an index file that is read, in bytes (Debian 6.1's `modules.alias` is
/// 1.3 MB).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// Deepest chain of dependencies and softdeps followed by one plan.
pub const MAX_PLAN_DEPTH: usize = 64;
/// Deepest directory below `<sys>/devices` searched for `modalias` files.
pub const MAX_SYSFS_DEPTH: usize = 32;
/// Most coldplug passes (each pass may reveal devices behind a newly loaded bus driver).
pub const MAX_PASSES: usize = 10;
/// Largest `modalias` file read, in bytes (sysfs attributes are one page).
const MAX_MODALIAS_BYTES: u64 = 4096;

/// Index of one kernel's modules directory (`/lib/modules/$(uname -r)`), read once by
/// [`ModuleIndex::load`]. Holds no open files.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// The modules directory; `modules.dep` paths are relative to it.
    dir: PathBuf,
    /// Loadable modules by name.
    modules: HashMap<String, Module>,
    /// `modules.alias` entries in file order.
    aliases: Vec<Alias>,
    /// Names of the modules built into the kernel.
    builtin: HashSet<String>,
    /// Aliases of builtin modules, from `modules.builtin.modinfo`.
    builtin_aliases: Vec<Alias>,
    /// Softdeps by module name.
    softdeps: HashMap<String, SoftDeps>,
}

/// One `modules.dep` line.
#[derive(Debug)]
struct Module {
    /// The `.ko` file, as written in `modules.dep` (relative to the modules directory).
    path: PathBuf,
    /// Names of every module it needs, in `modules.dep` order (depmod lists the transitive
    /// closure, dependents before what they depend on).
    deps: Vec<String>,
}

/// One alias pattern and the module it names.
#[derive(Debug)]
struct Alias {
    /// Normalised glob pattern.
    pattern: String,
    /// Length of the pattern's literal prefix, before its first glob metacharacter.
    literal_len: usize,
    /// Normalised module name.
    module: String,
}

/// The softdep aliases of one module.
#[derive(Debug, Default)]
struct SoftDeps {
    pre: Vec<String>,
    post: Vec<String>,
}

/// One module to load, in plan order.
#[derive(Debug)]
struct Step {
    name: String,
    /// Absolute (or dir-relative, if `dir` is relative) path of the `.ko` file.
    path: PathBuf,
    /// Hard dependencies: if any of them failed, this step is skipped.
    deps: Vec<String>,
}

impl ModuleIndex {
    /// Reads `modules.dep` (required), `modules.alias`, `modules.softdep`, `modules.builtin`
    /// and `modules.builtin.modinfo` (each optional: missing means empty) from `dir`.
    /// Malformed lines are ignored. Fails with [`Error::Io`] naming the path when
    /// `modules.dep` is missing or any file cannot be read.
    pub fn load(dir: &Path) -> Result<Self> {
        let dep_path = dir.join("modules.dep");
        let dep = read_index(&dep_path)?
            .ok_or_else(|| Error::io("reading", &dep_path, io::ErrorKind::NotFound.into()))?;
        let optional =
            |name: &str| -> Result<String> { Ok(read_index(&dir.join(name))?.unwrap_or_default()) };
        let mut index = ModuleIndex {
            dir: dir.to_path_buf(),
            ..ModuleIndex::default()
        };
        index.parse_dep(&dep);
        index.parse_alias(&optional("modules.alias")?);
        index.parse_softdep(&optional("modules.softdep")?);
        index.parse_builtin(&optional("modules.builtin")?);
        index.parse_builtin_modinfo(&optional("modules.builtin.modinfo")?);
        Ok(index)
    }

    /// Module names that `alias` resolves to, each once: `[name]` when it is a loadable or
    /// builtin module's name (`-` or `_` spelling), otherwise every module whose
    /// `modules.alias` pattern matches, in file order, otherwise every builtin module with a
    /// matching alias. Empty when nothing matches. Works for exact names, `fs-vfat`-style
    /// aliases and sysfs modalias strings (`pci:v00008086d...`).
    pub fn resolve(&self, alias: &str) -> Vec<String> {
        if alias.is_empty() {
            return Vec::new();
        }
        let name = normalise_name(alias);
        if self.modules.contains_key(&name) || self.builtin.contains(&name) {
            return vec![name];
        }
        let key = normalise_alias(alias);
        let found = matching(&self.aliases, &key);
        if found.is_empty() {
            matching(&self.builtin_aliases, &key)
        } else {
            found
        }
    }

    /// Files to load, in order, to load the module named `module` (`-` or `_` spelling; use
    /// [`ModuleIndex::resolve`] for aliases). For each module: its softdep `pre:` modules, then
    /// its `modules.dep` dependencies (each before its dependents), then itself, then its
    /// softdep `post:` modules. Every file appears once. Builtin and unknown modules contribute
    /// nothing; a cycle is broken where it closes.
    pub fn load_plan(&self, module: &str) -> Vec<PathBuf> {
        self.steps(&normalise_name(module), &|_| false)
            .into_iter()
            .map(|step| step.path)
            .collect()
    }

    /// The plan for `name`, leaving out modules for which `settled` is true (already loaded
    /// or already failed) and everything only they need.
    fn steps(&self, name: &str, settled: &dyn Fn(&str) -> bool) -> Vec<Step> {
        let mut walk = Walk {
            index: self,
            settled,
            visiting: HashSet::new(),
            done: HashSet::new(),
            steps: Vec::new(),
        };
        walk.visit(name, 0);
        walk.steps
    }

    fn parse_dep(&mut self, text: &str) {
        // dependencies that have no line of their own still need a path
        let mut fallback = Vec::new();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            let Some(name) = module_name(path) else {
                continue;
            };
            let mut dep_names = Vec::new();
            for dep in deps.split_whitespace() {
                if let Some(dep_name) = module_name(dep) {
                    fallback.push((dep_name.clone(), dep));
                    dep_names.push(dep_name);
                }
            }
            // the first line for a name wins, as in depmod's own priority order
            self.modules.entry(name).or_insert(Module {
                path: PathBuf::from(path),
                deps: dep_names,
            });
        }
        for (name, path) in fallback {
            self.modules.entry(name).or_insert_with(|| Module {
                path: PathBuf::from(path),
                deps: Vec::new(),
            });
        }
    }

    fn parse_alias(&mut self, text: &str) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some("alias"), Some(pattern), Some(module), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            self.aliases.push(Alias::new(pattern, module));
        }
    }

    fn parse_softdep(&mut self, text: &str) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
                continue;
            };
            let entry = self.softdeps.entry(normalise_name(module)).or_default();
            let mut list: Option<&mut Vec<String>> = None;
            for word in words {
                match word {
                    "pre:" => list = Some(&mut entry.pre),
                    "post:" => list = Some(&mut entry.post),
                    // kmod ignores names before the first pre:/post:
                    _ => {
                        if let Some(list) = list.as_mut() {
                            list.push(word.to_owned());
                        }
                    }
                }
            }
        }
    }

    fn parse_builtin(&mut self, text: &str) {
        self.builtin
            .extend(text.lines().filter_map(|line| module_name(line.trim())));
    }

    /// `modules.builtin.modinfo` is NUL-separated `module.key=value` records, one set per
    /// builtin module; the names and `alias` values are kept.
    fn parse_builtin_modinfo(&mut self, text: &str) {
        for record in text.split('\0') {
            let Some((module, rest)) = record.split_once('.') else {
                continue;
            };
            if module.is_empty() || !rest.contains('=') {
                continue;
            }
            self.builtin.insert(normalise_name(module));
            match rest.strip_prefix("alias=") {
                Some(alias) if !alias.is_empty() => {
                    self.builtin_aliases.push(Alias::new(alias, module));
                }
                _ => {}
            }
        }
    }
}

impl Alias {
    fn new(pattern: &str, module: &str) -> Self {
        let pattern = normalise_alias(pattern);
        let literal_len = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
        Alias {
            pattern,
            literal_len,
            module: normalise_name(module),
        }
    }

    fn matches(&self, key: &str) -> bool {
        let (pattern, key) = (self.pattern.as_bytes(), key.as_bytes());
        if self.literal_len == pattern.len() {
            return pattern == key;
        }
        // cheap rejection: most patterns differ from the key in their bus prefix
        match pattern.get(..self.literal_len) {
            Some(prefix) if key.starts_with(prefix) => glob_match(pattern, key),
            _ => false,
        }
    }
}

/// Modules named by the aliases in `aliases` that match `key`, each once, in order.
fn matching(aliases: &[Alias], key: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for alias in aliases.iter().filter(|a| a.matches(key)) {
        if !found.contains(&alias.module) {
            found.push(alias.module.clone());
        }
    }
    found
}

/// Depth-first walk building a plan.
struct Walk<'a> {
    index: &'a ModuleIndex,
    settled: &'a dyn Fn(&str) -> bool,
    /// Modules on the current path (a name met again here closes a cycle).
    visiting: HashSet<String>,
    /// Modules already in `steps`.
    done: HashSet<String>,
    steps: Vec<Step>,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str, depth: usize) {
        let index = self.index;
        if depth > MAX_PLAN_DEPTH
            || self.done.contains(name)
            || self.visiting.contains(name)
            || index.builtin.contains(name)
            || (self.settled)(name)
        {
            return;
        }
        let Some(module) = index.modules.get(name) else {
            return;
        };
        self.visiting.insert(name.to_owned());
        let soft = index.softdeps.get(name);
        for pre in soft.map(|s| s.pre.as_slice()).unwrap_or_default() {
            for target in index.resolve(pre) {
                self.visit(&target, depth + 1);
            }
        }
        // depmod lists dependents first; kmod loads the list back to front
        for dep in module.deps.iter().rev() {
            self.visit(dep, depth + 1);
        }
        self.visiting.remove(name);
        self.done.insert(name.to_owned());
        self.steps.push(Step {
            name: name.to_owned(),
            path: index.dir.join(&module.path),
            deps: module.deps.clone(),
        });
        for post in soft.map(|s| s.post.as_slice()).unwrap_or_default() {
            for target in index.resolve(post) {
                self.visit(&target, depth + 1);
            }
        }
    }
}

/// Why one module was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The loader failed on the module's file (ENODEV from a driver that probes for absent
    /// hardware, ENOEXEC for a module of another kernel, ENOENT for a missing file...).
    #[error("loading {path}")]
    Load {
        /// The `.ko` file.
        path: PathBuf,
        /// What the loader returned.
        #[source]
        source: io::Error,
    },
    /// A `modules.dep` dependency (named here) failed or was skipped, so this module was not
    /// tried.
    #[error("dependency {0} was not loaded")]
    Dependency(String),
}

/// What a coldplug run (or a [`load_by_name`] request) did.
#[derive(Debug, Default)]
pub struct Coldplug {
    /// Modules loaded, in load order.
    pub loaded: Vec<String>,
    /// Modules that failed or were skipped, each once, with the reason.
    pub failed: Vec<(String, LoadFailure)>,
    /// Passes over sysfs made (at least 1, at most [`MAX_PASSES`]).
    pub passes: usize,
}

impl Coldplug {
    /// Loads the plan for `name` through `loader`, skipping modules in `loaded` and modules
    /// that already failed in this run. Adds what it loads to `loaded` and `self.loaded`.
    fn run(
        &mut self,
        index: &ModuleIndex,
        name: &str,
        loaded: &mut HashSet<String>,
        loader: &mut dyn FnMut(&Path) -> io::Result<()>,
    ) {
        let failed: HashSet<String> = self.failed.iter().map(|(n, _)| n.clone()).collect();
        let steps = index.steps(name, &|n| loaded.contains(n) || failed.contains(n));
        let mut failed = failed;
        for step in steps {
            let failure = if let Some(dep) = step.deps.iter().find(|d| failed.contains(*d)) {
                LoadFailure::Dependency(dep.clone())
            } else {
                match loader(&step.path) {
                    Ok(()) => {
                        loaded.insert(step.name.clone());
                        self.loaded.push(step.name);
                        continue;
                    }
                    Err(source) => LoadFailure::Load {
                        path: step.path,
                        source,
                    },
                }
            };
            failed.insert(step.name.clone());
            self.failed.push((step.name, failure));
        }
    }
}

/// Loads the modules for every `modalias` file under `<sys>/devices` (symlinks not followed,
/// at most [`MAX_SYSFS_DEPTH`] levels), with their dependencies, through `loader`. Repeats
/// while a pass loads something, because a newly loaded bus driver (xhci, ahci...) creates
/// devices with new modaliases; stops after [`MAX_PASSES`]. Each modalias is resolved once
/// per call, and a module that failed is not retried within the call.
///
/// `loaded` holds the names already in the kernel (see [`loaded_modules`]) and gains the ones
/// loaded here. One module failing (ENODEV is common) never stops the others.
pub fn coldplug(
    index: &ModuleIndex,
    sys: &Path,
    loaded: &mut HashSet<String>,
    loader: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> Coldplug {
    let devices = sys.join("devices");
    let mut report = Coldplug::default();
    let mut seen = HashSet::new();
    for pass in 1..=MAX_PASSES {
        report.passes = pass;
        let before = report.loaded.len();
        for modalias in modaliases(&devices) {
            if !seen.insert(modalias.clone()) {
                continue;
            }
            for name in index.resolve(&modalias) {
                report.run(index, &name, loaded, loader);
            }
        }
        if report.loaded.len() == before {
            break;
        }
    }
    report
}

/// Loads the module(s) `alias` resolves to, with their dependencies and softdeps, through
/// `loader` (for the kernel's `modprobe NAME` requests and for explicit modules such as `fuse`,
/// `vfat` or `usb_storage`). Returns the names newly loaded, in order: empty when the module is
/// builtin or already in `loaded`, which gains every name loaded.
///
/// Succeeds when at least one resolved module is now loaded or builtin, even if some of its
/// softdeps failed. Fails with [`Error::Io`] with kind NotFound when `alias` names no module,
/// and otherwise with the first load failure (op "loading module", the `.ko` path).
pub fn load_by_name(
    index: &ModuleIndex,
    alias: &str,
    loaded: &mut HashSet<String>,
    loader: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> Result<Vec<String>> {
    let targets = index.resolve(alias);
    if targets.is_empty() {
        return Err(Error::io(
            "finding a module for",
            alias,
            io::ErrorKind::NotFound.into(),
        ));
    }
    let mut report = Coldplug::default();
    for target in &targets {
        report.run(index, target, loaded, loader);
    }
    if targets
        .iter()
        .any(|t| loaded.contains(t) || index.builtin.contains(t))
    {
        return Ok(report.loaded);
    }
    // the first failure of a plan is always a load, never a skipped dependent
    let first = report.failed.into_iter().find_map(|(_, f)| match f {
        LoadFailure::Load { path, source } => Some((path, source)),
        LoadFailure::Dependency(_) => None,
    });
    Err(match first {
        Some((path, source)) => Error::io("loading module", path, source),
        None => Error::io(
            "loading module",
            alias,
            io::Error::other("no module was loaded"),
        ),
    })
}

/// Loads one module file into the kernel with `finit_module(2)` and no parameters; `.xz`,
/// `.zst` and `.gz` files are handed to the kernel to decompress. A module that is already
/// loaded (EEXIST) counts as success. Needs CAP_SYS_MODULE.
pub fn finit_module(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let compressed = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("xz" | "zst" | "gz")
    );
    let flags = if compressed {
        super::sys::MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    match super::sys::finit_module(&file, c"", flags) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Names of the modules listed in `proc_modules` (normally `/proc/modules`, one module per
/// line, name first). An unreadable file gives an empty set.
pub fn loaded_modules(proc_modules: &Path) -> HashSet<String> {
    read_index(proc_modules)
        .ok()
        .flatten()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(normalise_name)
        .collect()
}

/// Reads at most [`MAX_INDEX_BYTES`] of `path` as text (invalid UTF-8 replaced).
/// `Ok(None)` when the file does not exist.
fn read_index(path: &Path) -> Result<Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The modalias strings under `devices`, deduplicated, in sorted walk order. Unreadable
/// directories and files are skipped (devices come and go during the walk).
fn modaliases(devices: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(devices.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            // file_type() does not follow symlinks: sysfs is full of loops
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if depth < MAX_SYSFS_DEPTH {
                    subdirs.push((entry.path(), depth + 1));
                }
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Some(alias) = read_modalias(&entry.path()) {
                    if seen.insert(alias.clone()) {
                        found.push(alias);
                    }
                }
            }
        }
        // reversed so that the stack pops them in name order
        stack.extend(subdirs.into_iter().rev());
    }
    found
}

/// The trimmed contents of one `modalias` file, or `None` if unreadable or empty.
fn read_modalias(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(MAX_MODALIAS_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The module name of a `modules.dep`/`modules.builtin` path: file stem without `.ko` (and a
/// compression suffix), `-` replaced by `_`. `None` for anything else.
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))?;
    (!stem.is_empty()).then(|| normalise_name(stem))
}

/// A module name as the kernel spells it: `-` replaced by `_`.
fn normalise_name(name: &str) -> String {
    name.replace('-', "_")
}

/// kmod's `alias_normalize()`: `-` becomes `_`, except inside `[...]` where it may be a range.
fn normalise_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_class = false;
    for c in alias.chars() {
        match c {
            '[' => in_class = true,
            ']' => in_class = false,
            '-' if !in_class => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// One element of a glob pattern.
enum Token {
    /// `*`: any run of bytes, including none.
    Star,
    /// Anything else: exactly one byte, and whether the byte at hand matches it.
    One(bool),
}

/// Whether `text` matches the glob `pattern` as `fnmatch(pattern, text, 0)` would, byte by
/// byte: `*`, `?`, `[...]` classes with ranges and `!`/`^` negation (a `]` first in a class is
/// literal, an unclosed `[` is literal), and `\` escapes. Iterative: O(len(pattern) ×
/// len(text)) in the worst case, no recursion.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // after a `*`: the pattern position following it and the text position it was tried at
    let mut star: Option<(usize, usize)> = None;
    while let Some(&byte) = text.get(t) {
        match next_token(pattern, p, byte) {
            Some((Token::Star, next)) => {
                star = Some((next, t));
                p = next;
                continue;
            }
            Some((Token::One(true), next)) => {
                p = next;
                t += 1;
                continue;
            }
            Some((Token::One(false), _)) | None => {}
        }
        // mismatch: let the last `*` swallow one more byte, or fail
        let Some((star_p, star_t)) = star else {
            return false;
        };
        star = Some((star_p, star_t + 1));
        p = star_p;
        t = star_t + 1;
    }
    // text used up: only `*`s may remain
    while let Some(b'*') = pattern.get(p) {
        p += 1;
    }
    p == pattern.len()
}

/// The token starting at `pattern[p]` tested against `byte`, and the position after it.
/// `None` at the end of the pattern.
fn next_token(pattern: &[u8], p: usize, byte: u8) -> Option<(Token, usize)> {
    let first = *pattern.get(p)?;
    Some(match first {
        b'*' => (Token::Star, p + 1),
        b'?' => (Token::One(true), p + 1),
        b'[' => match class_match(pattern, p + 1, byte) {
            Some((hit, next)) => (Token::One(hit), next),
            None => (Token::One(byte == b'['), p + 1),
        },
        b'\\' => match pattern.get(p + 1) {
            Some(&escaped) => (Token::One(byte == escaped), p + 2),
            None => (Token::One(byte == b'\\'), p + 1),
        },
        literal => (Token::One(byte == literal), p + 1),
    })
}

/// Tests `byte` against the class whose body starts at `pattern[p]` (just after `[`).
/// Returns the verdict and the position after the closing `]`, or `None` if the class is
/// never closed.
fn class_match(pattern: &[u8], mut p: usize, byte: u8) -> Option<(bool, usize)> {
    let negated = matches!(pattern.get(p), Some(b'!' | b'^'));
    if negated {
        p += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let c = *pattern.get(p)?;
        if c == b']' && !first {
            return Some((hit != negated, p + 1));
        }
        first = false;
        let (low, after) = class_char(pattern, p)?;
        p = after;
        // a range `a-z`, unless the `-` is last before the closing `]`
        if let (Some(b'-'), Some(&next)) = (pattern.get(p), pattern.get(p + 1)) {
            if next != b']' {
                let (high, after) = class_char(pattern, p + 1)?;
                p = after;
                hit |= (low..=high).contains(&byte);
                continue;
            }
        }
        hit |= byte == low;
    }
}

/// One possibly escaped byte of a class at `pattern[p]` and the position after it.
fn class_char(pattern: &[u8], p: usize) -> Option<(u8, usize)> {
    match *pattern.get(p)? {
        b'\\' => pattern.get(p + 1).map(|&c| (c, p + 2)),
        c => Some((c, p + 1)),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    const DEP: &str = "\
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/usb/host/xhci-pci.ko: kernel/drivers/usb/host/xhci-hcd.ko kernel/drivers/usb/core/usbcore.ko
kernel/drivers/usb/host/xhci-hcd.ko: kernel/drivers/usb/core/usbcore.ko
kernel/drivers/usb/core/usbcore.ko:
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/usb/core/usbcore.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/char/ipmi/ipmi_msghandler.ko:
kernel/drivers/char/ipmi/ipmi_devintf.ko: kernel/drivers/char/ipmi/ipmi_msghandler.ko
kernel/misc/broken.ko: kernel/misc/libbroken.ko
kernel/misc/libbroken.ko:
kernel/misc/cyc-a.ko: kernel/misc/cyc-b.ko
kernel/misc/cyc-b.ko: kernel/misc/cyc-a.ko
kernel/misc/soft-a.ko:
kernel/misc/soft-b.ko:
";

    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias fs-vfat vfat
alias fs-ext4 ext4
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias pci:v0000BEEFd*sv*sd*bc*sc*i* broken
alias of:N*T*Cfsl,imx[0-9][0-9]-uart* imx_uart
";

    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep ipmi_msghandler post: ipmi_devintf
softdep cifs gcm
softdep soft-a pre: soft_b
softdep soft_b pre: soft-a
";

    const BUILTIN: &str =
        "kernel/crypto/crc32c_generic.ko\nkernel/drivers/usb/common/usb-common.ko\n";

    const BUILTIN_MODINFO: &str =
        "crc32c_generic.alias=crypto-crc32c-generic\0md5.alias=crypto-md5\0md5.file=crypto/md5\0";

    /// A modules directory holding `files`.
    fn index_dir(files: &[(&str, &[u8])]) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn fake_index() -> (TempDir, ModuleIndex) {
        let dir = index_dir(&[
            ("modules.dep", DEP.as_bytes()),
            ("modules.alias", ALIAS.as_bytes()),
            ("modules.softdep", SOFTDEP.as_bytes()),
            ("modules.builtin", BUILTIN.as_bytes()),
            ("modules.builtin.modinfo", BUILTIN_MODINFO.as_bytes()),
        ]);
        let index = ModuleIndex::load(dir.path()).unwrap();
        (dir, index)
    }

    /// Module names of plan paths.
    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| module_name(p.to_str().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn glob_cases() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("empty both", "", "", true),
            ("empty pattern", "", "a", false),
            ("star matches empty", "*", "", true),
            ("stars only", "***", "abc", true),
            ("literal", "abc", "abc", true),
            ("literal longer text", "abc", "abcd", false),
            ("literal shorter text", "abcd", "abc", false),
            ("question one", "a?c", "abc", true),
            ("question needs a byte", "a?", "a", false),
            ("star middle", "a*c", "abbbc", true),
            ("star backtracks", "a*bc", "abcbc", true),
            ("star then literal tail", "*x", "abc", false),
            ("star crosses slash", "a*c", "a/b/c", true),
            (
                "many stars",
                "pci:v*d*sv*sd*bc*sc*i*",
                "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
                true,
            ),
            (
                "modalias wrong class",
                "pci:v*d*sv*sd*bc0Csc03i30*",
                "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
                false,
            ),
            ("class hit", "[abc]", "b", true),
            ("class miss", "[abc]", "d", false),
            ("range", "v[0-9]", "v7", true),
            ("range miss", "v[0-9]", "vA", false),
            ("two ranges", "[A-Fa-f]", "e", true),
            ("negated bang", "[!0-9]", "x", true),
            ("negated bang miss", "[!0-9]", "5", false),
            ("negated caret", "[^a]", "b", true),
            ("negated caret miss", "[^a]", "a", false),
            ("bracket first is literal", "[]a]", "]", true),
            ("negated bracket first", "[!]]", "]", false),
            ("dash last is literal", "[a-]", "-", true),
            ("dash first is literal", "[-a]", "-", true),
            ("unclosed class is literal", "a[b", "a[b", true),
            ("unclosed class no match", "a[b", "ab", false),
            ("escaped star", "a\\*", "a*", true),
            ("escaped star is not wildcard", "a\\*", "ab", false),
            ("escape in class", "[\\]]", "]", true),
            ("trailing backslash literal", "a\\", "a\\", true),
            (
                "class then star",
                "usb:v[0-9A-F]*p*",
                "usb:v0781p5567",
                true,
            ),
            (
                "pathological",
                "a*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ];
        for (name, pattern, text, want) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *want,
                "{name}: {pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise_name("usb-storage"), "usb_storage");
        assert_eq!(normalise_alias("fs-vfat"), "fs_vfat");
        assert_eq!(
            normalise_alias("of:N*Cfsl,imx[0-9]-uart"),
            "of:N*Cfsl,imx[0-9]_uart"
        );
        assert_eq!(
            module_name("kernel/a/crc32c-intel.ko").unwrap(),
            "crc32c_intel"
        );
        assert_eq!(module_name("kernel/a/b.ko.zst").unwrap(), "b");
        assert_eq!(module_name("b.ko.xz").unwrap(), "b");
        assert_eq!(module_name("kernel/a/b.o"), None);
        assert_eq!(module_name("kernel/.ko"), None);
    }

    #[test]
    fn resolve_cases() {
        let (_dir, index) = fake_index();
        let cases: &[(&str, &str, &[&str])] = &[
            ("module name", "ahci", &["ahci"]),
            ("dashed module name", "usb-storage", &["usb_storage"]),
            ("dashed file name", "crc32c-intel", &["crc32c_intel"]),
            ("fs alias", "fs-vfat", &["vfat"]),
            ("fs alias underscore", "fs_vfat", &["vfat"]),
            (
                "alias to several",
                "crypto-crc32c",
                &["crc32c_intel", "crc32c_generic"],
            ),
            ("builtin name", "crc32c_generic", &["crc32c_generic"]),
            ("builtin alias", "crypto-md5", &["md5"]),
            (
                "modalias two patterns, one module",
                "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
                &["ahci"],
            ),
            (
                "modalias by class",
                "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30",
                &["xhci_pci"],
            ),
            (
                "bracket pattern with dash",
                "of:NserialTCfsl,imx21-uart",
                &["imx_uart"],
            ),
            ("unknown", "fs-zfs", &[]),
            ("unknown modalias", "acpi:PNP0A03:", &[]),
            ("empty", "", &[]),
        ];
        for (name, alias, want) in cases {
            assert_eq!(index.resolve(alias), *want, "{name}: {alias}");
        }
    }

    #[test]
    fn load_order() {
        let (dir, index) = fake_index();
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "deps before dependents",
                "ahci",
                &["scsi_mod", "libata", "libahci", "ahci"],
            ),
            (
                "dashed name",
                "usb-storage",
                &["scsi_mod", "usbcore", "usb_storage"],
            ),
            ("no deps", "fat", &["fat"]),
            // crc32c_generic is builtin: only crc32c_intel is loaded for the softdep
            (
                "softdep pre via alias",
                "ext4",
                &["crc32c_intel", "jbd2", "ext4"],
            ),
            (
                "softdep post",
                "ipmi_msghandler",
                &["ipmi_msghandler", "ipmi_devintf"],
            ),
            (
                "post of a dependency",
                "ipmi_devintf",
                &["ipmi_msghandler", "ipmi_devintf"],
            ),
            ("builtin", "crc32c_generic", &[]),
            ("unknown", "zfs", &[]),
            ("dependency cycle", "cyc_a", &["cyc_b", "cyc_a"]),
            ("softdep cycle", "soft_a", &["soft_b", "soft_a"]),
        ];
        for (name, module, want) in cases {
            assert_eq!(names(&index.load_plan(module)), *want, "{name}: {module}");
        }
        // paths are joined to the modules directory
        assert_eq!(
            index.load_plan("fat"),
            [dir.path().join("kernel/fs/fat/fat.ko")]
        );
    }

    /// A fake loader: records module names, fails `libbroken` with ENODEV, and makes loading
    /// `xhci_pci` reveal a USB mass-storage interface under `sys`.
    fn fake_loader(sys: &Path, calls: &mut Vec<String>, path: &Path) -> io::Result<()> {
        let name = module_name(path.to_str().unwrap()).unwrap();
        calls.push(name.clone());
        match name.as_str() {
            "libbroken" => Err(io::Error::from_raw_os_error(libc::ENODEV)),
            "xhci_pci" => {
                let dev = sys.join("devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0");
                fs::create_dir_all(&dev).unwrap();
                fs::write(
                    dev.join("modalias"),
                    "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00\n",
                )
                .unwrap();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn write_modalias(sys: &Path, dev: &str, modalias: &str) {
        let dir = sys.join("devices").join(dev);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("modalias"), modalias).unwrap();
    }

    #[test]
    fn coldplug_passes() {
        let (_dir, index) = fake_index();
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        let ahci = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n";
        write_modalias(&sys, "pci0000:00/0000:00:1f.2", ahci);
        write_modalias(
            &sys,
            "pci0000:00/0000:00:14.0",
            "pci:v00008086d0000A12Fsv00001AF4sd00001100bc0Csc03i30\n",
        );
        write_modalias(
            &sys,
            "pci0000:00/0000:00:1e.0",
            "pci:v0000BEEFd00000001sv00000000sd00000000bc00sc00i00\n",
        );
        // the same modalias twice, one nobody handles, and an empty one
        write_modalias(&sys, "pci0000:00/0000:00:1f.3", ahci);
        write_modalias(&sys, "platform/serial8250", "platform:serial8250\n");
        write_modalias(&sys, "platform/empty", "");
        // symlinks are not followed: a loop, and a link to a tree whose modalias would load
        // usb_storage in the first pass
        write_modalias(
            &sys,
            "../bus/usb/devices/x",
            "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
        );
        symlink("..", sys.join("devices/pci0000:00/loop")).unwrap();
        symlink("../bus", sys.join("devices/bus")).unwrap();

        let mut loaded: HashSet<String> = ["scsi_mod".to_owned()].into();
        let mut calls = Vec::new();
        let report = coldplug(&index, &sys, &mut loaded, &mut |p| {
            fake_loader(&sys, &mut calls, p)
        });

        // pass 1 loads the bus drivers, pass 2 the USB device behind xhci, pass 3 finds nothing
        assert_eq!(report.passes, 3);
        assert_eq!(
            report.loaded,
            [
                "usbcore",
                "xhci_hcd",
                "xhci_pci",
                "libata",
                "libahci",
                "ahci",
                "usb_storage"
            ]
        );
        // the failed dependency is tried once and its dependent skipped with a reason
        assert_eq!(
            calls,
            [
                "usbcore",
                "xhci_hcd",
                "xhci_pci",
                "libbroken",
                "libata",
                "libahci",
                "ahci",
                "usb_storage"
            ]
        );
        assert_eq!(report.failed.len(), 2);
        let (name, failure) = &report.failed[0];
        assert_eq!(name, "libbroken");
        assert!(
            matches!(failure, LoadFailure::Load { source, .. } if source.raw_os_error() == Some(libc::ENODEV))
        );
        let (name, failure) = &report.failed[1];
        assert_eq!(name, "broken");
        assert!(matches!(failure, LoadFailure::Dependency(dep) if dep == "libbroken"));
        assert_eq!(failure.to_string(), "dependency libbroken was not loaded");
        assert!(loaded.contains("usb_storage") && loaded.contains("scsi_mod"));
        assert!(!loaded.contains("broken"));

        // a second coldplug finds everything loaded
        let mut calls = Vec::new();
        let again = coldplug(&index, &sys, &mut loaded, &mut |p| {
            fake_loader(&sys, &mut calls, p)
        });
        assert_eq!(again.passes, 1);
        assert!(again.loaded.is_empty());
        // only the failed ones are retried in a new run
        assert_eq!(calls, ["libbroken"]);
    }

    #[test]
    fn coldplug_stops_after_max_passes() {
        // loading chainN reveals a device for chainN+1, forever
        let dep: String = (0..20).map(|n| format!("kernel/chain{n}.ko:\n")).collect();
        let alias: String = (0..20)
            .map(|n| format!("alias dev:{n} chain{n}\n"))
            .collect();
        let dir = index_dir(&[
            ("modules.dep", dep.as_bytes()),
            ("modules.alias", alias.as_bytes()),
        ]);
        let index = ModuleIndex::load(dir.path()).unwrap();
        let sys = dir.path().join("sys");
        write_modalias(&sys, "d0", "dev:0");
        let mut loaded = HashSet::new();
        let report = coldplug(&index, &sys, &mut loaded, &mut |p| {
            let n: usize = p
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_start_matches("chain")
                .parse()
                .unwrap();
            write_modalias(&sys, &format!("d{}", n + 1), &format!("dev:{}", n + 1));
            Ok(())
        });
        assert_eq!(report.passes, MAX_PASSES);
        assert_eq!(report.loaded.len(), MAX_PASSES);
    }

    #[test]
    fn coldplug_without_sysfs() {
        let (_dir, index) = fake_index();
        let report = coldplug(
            &index,
            Path::new("/nonexistent/sys"),
            &mut HashSet::new(),
            &mut |_| Ok(()),
        );
        assert_eq!(report.passes, 1);
        assert!(report.loaded.is_empty() && report.failed.is_empty());
    }

    #[test]
    fn load_by_name_cases() {
        let (_dir, index) = fake_index();
        let mut loaded = HashSet::new();
        let mut calls = Vec::new();
        let mut loader = |p: &Path| -> io::Result<()> {
            let name = module_name(p.to_str().unwrap()).unwrap();
            calls.push(name.clone());
            match name.as_str() {
                "libbroken" | "crc32c_intel" => Err(io::Error::from_raw_os_error(libc::ENODEV)),
                _ => Ok(()),
            }
        };

        assert_eq!(
            load_by_name(&index, "fs-vfat", &mut loaded, &mut loader).unwrap(),
            ["fat", "vfat"]
        );
        // already loaded: nothing to do
        assert!(load_by_name(&index, "vfat", &mut loaded, &mut loader)
            .unwrap()
            .is_empty());
        // builtin: nothing to do
        assert!(load_by_name(&index, "crypto-md5", &mut loaded, &mut loader)
            .unwrap()
            .is_empty());
        // a failed softdep does not stop the module
        assert_eq!(
            load_by_name(&index, "ext4", &mut loaded, &mut loader).unwrap(),
            ["jbd2", "ext4"]
        );
        // a failed hard dependency does, and the error names the dependency's file
        let err = load_by_name(&index, "broken", &mut loaded, &mut loader).unwrap_err();
        assert!(
            matches!(&err, Error::Io { op: "loading module", path, source }
                if path.ends_with("kernel/misc/libbroken.ko")
                    && source.raw_os_error() == Some(libc::ENODEV)),
            "{err:?}"
        );
        let err = load_by_name(&index, "fs-zfs", &mut loaded, &mut loader).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert_eq!(
            calls,
            ["fat", "vfat", "crc32c_intel", "jbd2", "ext4", "libbroken"]
        );
    }

    #[test]
    fn malformed_index_files() {
        let mut dep = Vec::new();
        dep.extend_from_slice(
            b"no colon here\n\
              : kernel/orphan-dep.ko\n\
              kernel/not-a-module.o: kernel/x.ko\n\
              kernel/good.ko: kernel/needed-dep.ko garbage kernel/libgood.ko\n\
              kernel/libgood.ko:\n\
              kernel/good.ko: kernel/shadowed.ko\n\
              \n   \n",
        );
        dep.extend_from_slice(&[0xff, 0xfe, b':', b'\n', 0]);
        dep.extend_from_slice(b"kernel/tail.ko:");
        let alias =
            b"alias\nalias only-two\nalias a b c\nalias fs-good good\nnotalias x y\n\xff\xfe\n";
        let softdep =
            b"softdep\nsoftdep good\nsoftdep good post:\nsoftdep good pre: pre: missing-module\n";
        let builtin = b"\nkernel/foo\n/\n\xff.ko\n";
        let modinfo = b"\0.alias=x\0noalias\0m.alias=\0other.file=x\0";
        let dir = index_dir(&[
            ("modules.dep", &dep),
            ("modules.alias", alias),
            ("modules.softdep", softdep),
            ("modules.builtin", builtin),
            ("modules.builtin.modinfo", modinfo),
        ]);
        let index = ModuleIndex::load(dir.path()).unwrap();
        assert_eq!(index.resolve("fs-good"), ["good"]);
        assert_eq!(index.resolve("b"), Vec::<String>::new());
        // the first line for a module wins; a dependency without a line of its own still loads
        assert_eq!(
            names(&index.load_plan("good")),
            ["libgood", "needed_dep", "good"]
        );
        assert_eq!(names(&index.load_plan("tail")), ["tail"]);
    }

    #[test]
    fn missing_files() {
        // only modules.dep: everything else is empty
        let dir = index_dir(&[("modules.dep", b"kernel/a.ko:\n")]);
        let index = ModuleIndex::load(dir.path()).unwrap();
        assert_eq!(index.resolve("a"), ["a"]);
        assert!(index.resolve("fs-a").is_empty());

        // no modules.dep: an error naming it
        let empty = tempfile::tempdir().unwrap();
        let err = ModuleIndex::load(empty.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&empty.path().join("modules.dep").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn proc_modules() {
        let dir = index_dir(&[(
            "modules",
            b"ahci 45056 0 - Live 0x0000000000000000\nlibata 282624 2 libahci,ahci, Live 0x0\n\nusb-x 1 0 - Live 0\n",
        )]);
        let names = loaded_modules(&dir.path().join("modules"));
        let want: HashSet<String> = ["ahci", "libata", "usb_x"].map(String::from).into();
        assert_eq!(names, want);
        assert!(loaded_modules(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn finit_module_missing_file() {
        let err = finit_module(Path::new("/nonexistent/x.ko")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    /// Every module of `plan` comes after the `modules.dep` dependencies it needs.
    fn assert_valid_order(index: &ModuleIndex, plan: &[String]) {
        for (i, name) in plan.iter().enumerate() {
            for dep in &index.modules[name].deps {
                if index.builtin.contains(dep) {
                    continue;
                }
                let at = plan.iter().position(|n| n == dep);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{dep} must come before {name} in {plan:?}"
                );
            }
        }
    }

    /// Debian's own module tree, when the build cache has it (or `LIFEBOAT_DEBIAN_MODULES`
    /// names a `lib/modules/6.1.0-56-amd64` directory, e.g. from `dpkg-deb -x` of the
    /// linux-image .deb). The .deb ships no modules.dep, so depmod writes one into a temp root
    /// whose `kernel` is a symlink to the real tree.
    #[test]
    fn debian_module_tree() {
        const VERSION: &str = "6.1.0-56-amd64";
        let src = std::env::var_os("LIFEBOAT_DEBIAN_MODULES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                // where build.sh unpacks the kernel package (any Debian revision)
                fs::read_dir("/var/cache/lifeboat-build/unpacked")
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .find(|p| {
                        p.file_name().is_some_and(|n| {
                            n.to_string_lossy()
                                .starts_with("linux-image-6.1.0-56-amd64_")
                        })
                    })
                    .unwrap_or_default()
                    .join("lib/modules")
                    .join(VERSION)
            });
        if !src.join("kernel").is_dir() {
            println!("SKIP: no Debian module tree at {}", src.display());
            return;
        }
        let mut _root = None;
        let dir = if src.join("modules.dep").is_file() {
            src.clone()
        } else {
            let Some(depmod) = ["/usr/sbin/depmod", "/sbin/depmod"]
                .into_iter()
                .map(Path::new)
                .find(|p| p.is_file())
            else {
                println!("SKIP: depmod not found");
                return;
            };
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("lib/modules").join(VERSION);
            fs::create_dir_all(&dir).unwrap();
            symlink(src.join("kernel"), dir.join("kernel")).unwrap();
            for name in [
                "modules.builtin",
                "modules.builtin.modinfo",
                "modules.order",
            ] {
                if src.join(name).is_file() {
                    fs::copy(src.join(name), dir.join(name)).unwrap();
                }
            }
            let status = std::process::Command::new(depmod)
                .arg("-b")
                .arg(root.path())
                .arg(VERSION)
                .status()
                .unwrap();
            assert!(status.success(), "depmod failed: {status}");
            _root = Some(root);
            dir
        };
        let index = ModuleIndex::load(&dir).unwrap();

        let ahci = index.resolve("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01");
        assert!(ahci.contains(&"ahci".to_owned()), "{ahci:?}");
        let plan = names(&index.load_plan("ahci"));
        assert!(
            plan.ends_with(&["libata", "libahci", "ahci"].map(String::from)),
            "{plan:?}"
        );
        assert_valid_order(&index, &plan);

        assert_eq!(index.resolve("fs-vfat"), ["vfat"]);
        let plan = names(&index.load_plan("usb_storage"));
        let at = |name: &str| plan.iter().position(|n| n == name);
        assert!(
            at("usbcore") < at("usb_storage") && at("usbcore").is_some(),
            "{plan:?}"
        );

        // ext4's softdep on crypto-crc32c pulls in crc32c_intel first
        let plan = names(&index.load_plan("ext4"));
        assert!(
            plan.iter().position(|n| n == "crc32c_intel") < plan.iter().position(|n| n == "ext4")
        );

        // the modules PID 1 asks for by name
        for module in [
            "fuse",
            "ext4",
            "vfat",
            "exfat",
            "sd_mod",
            "sr_mod",
            "usb_storage",
            "uas",
            "hid_generic",
        ] {
            assert_eq!(index.resolve(module), [module]);
            assert_eq!(names(&index.load_plan(module)).last().unwrap(), module);
        }
        assert_eq!(index.resolve("fs-exfat"), ["exfat"]);
        assert_eq!(index.resolve("char-major-10-229"), ["fuse"]);

        // every module's plan holds it (last, unless it has post: softdeps) and respects
        // modules.dep
        assert!(index.modules.len() > 3000);
        for name in index.modules.keys() {
            let plan = names(&index.load_plan(name));
            let has_post = index.softdeps.get(name).is_some_and(|s| !s.post.is_empty());
            assert!(plan.contains(name), "{name}: {plan:?}");
            assert!(has_post || plan.last() == Some(name), "{name}: {plan:?}");
            assert_valid_order(&index, &plan);
        }
    }
}
