//! Every key of the attribute language, in one place.

use std::fmt;

use syn::{Ident, Path};

#[derive(Copy, Clone)]
pub(crate) struct Symbol(pub(crate) &'static str);

pub(crate) const EVENT: Symbol = Symbol("event");
pub(crate) const AGGREGATE: Symbol = Symbol("aggregate");
pub(crate) const PROJECTION: Symbol = Symbol("projection");

pub(crate) const NAME: Symbol = Symbol("name");
pub(crate) const VERSION: Symbol = Symbol("version");
pub(crate) const UPCAST_FROM: Symbol = Symbol("upcast_from");
pub(crate) const CRATE: Symbol = Symbol("crate");
pub(crate) const EVENTS: Symbol = Symbol("events");
pub(crate) const AGGREGATES: Symbol = Symbol("aggregates");
pub(crate) const SNAPSHOT: Symbol = Symbol("snapshot");
pub(crate) const EVERY: Symbol = Symbol("every");
pub(crate) const CONFLICTS: Symbol = Symbol("conflicts");
pub(crate) const CONTEXT: Symbol = Symbol("context");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
