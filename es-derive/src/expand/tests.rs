//! Expansion snapshots: the generated code, pretty-printed, reviewed in
//! `src/expand/snapshots/`.

use quote::ToTokens;
use syn::{DeriveInput, parse_quote};

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as Rust");
    prettyplease::unparse(&file)
}

#[test]
fn event_plain() {
    let input = parse_quote! {
        #[event(name = "ticket-opened")]
        pub struct TicketOpened { pub title: String }
    };
    insta::assert_snapshot!(pretty(
        super::event::try_expand(&input).expect("valid input")
    ));
}

#[test]
fn event_with_upcast() {
    let input = parse_quote! {
        #[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1, crate = "my_es")]
        pub struct TicketEscalated { pub reason: String }
    };
    insta::assert_snapshot!(pretty(
        super::event::try_expand(&input).expect("valid input")
    ));
}

#[test]
fn event_with_personal_subject() {
    let input = parse_quote! {
        #[event(name = "order-placed")]
        pub struct OrderPlaced {
            pub customer_id: String,
            #[personal(subject = customer_id)]
            #[serde(rename = "email")]
            pub customer_email: Personal<String>,
            pub shipping_name: Personal<String>,
        }
    };
    insta::assert_snapshot!(pretty(
        super::event::try_expand(&input).expect("valid input")
    ));
}

#[test]
fn aggregate_with_snapshots() {
    let input = parse_quote! {
        #[aggregate(name = "ticket", events(TicketOpened, events::TicketClosed), snapshot(every = 100))]
        pub struct Ticket { open: bool }
    };
    insta::assert_snapshot!(pretty(
        super::aggregate::try_expand(&input).expect("valid input")
    ));
}

#[test]
fn aggregate_with_conflicts() {
    let input: DeriveInput = parse_quote! {
        #[aggregate(events(Opened), conflicts = Self::conflicts_with)]
        pub struct Ticket;
    };
    let expanded = pretty(super::aggregate::try_expand(&input).expect("valid input"));
    let conflicts = "let __es_conflicts: fn(&[TicketEvent], &[TicketEvent]) -> bool = Self::conflicts_with;\n            __es_conflicts(ours, theirs)";
    assert!(expanded.contains(conflicts), "{expanded}");
}

/// A per-stream projection: the event enum over events of two aggregates,
/// `EventSet`, `Projection` and the `Apply` dispatch; no registration.
#[test]
fn projection_per_stream() {
    let input = parse_quote! {
        #[projection(events(LeadInitialized, crm::ContactDetailsUpdated))]
        pub struct LeadSearch { phone: String }
    };
    insta::assert_snapshot!(pretty(
        super::projection::try_expand(&input).expect("valid input")
    ));
}

/// A read model: `Dispatch<Cx>` hands each event, in its envelope, to
/// `Handle<E, Cx>`.
#[test]
fn projection_with_context() {
    let input = parse_quote! {
        #[projection(name = "lead-search", version = 2, events(LeadInitialized, crm::ContactDetailsUpdated), context = db::Tx)]
        pub struct LeadSearch;
    };
    insta::assert_snapshot!(pretty(
        super::projection::try_expand(&input).expect("valid input")
    ));
}

/// A projection limited to the streams of two aggregate types: `AGGREGATES`
/// from each type's `Aggregate::NAME`, through the `crate = "..."` path, and
/// the check that no aggregate is listed twice under another path.
#[test]
fn projection_with_aggregates() {
    let input = parse_quote! {
        #[projection(events(LeadInitialized), aggregates(Lead, crm::Ticket), crate = "my_es")]
        pub struct LeadSearch;
    };
    insta::assert_snapshot!(pretty(
        super::projection::try_expand(&input).expect("valid input")
    ));
}

/// The stub emitted beside the errors of an invalid projection: the enum,
/// the conversions, and stub `EventSet`, `Projection` (with the real
/// `AGGREGATES`) and `Dispatch`.
#[test]
fn projection_fallback() {
    let input = parse_quote! {
        #[projection(version = 0, events(Opened, b::Opened), aggregates(Desk, b::Desk), context = Tx)]
        struct Board;
    };
    let invalid = super::projection::try_expand(&input).expect_err("invalid input");
    insta::assert_snapshot!(pretty(invalid.stub));
}

/// Every error of a projection is reported in one build.
#[test]
fn all_errors_of_one_projection_are_reported() {
    let input: DeriveInput = parse_quote! {
        #[projection(nme = "x", version = 0, events(A, A), aggregates(L, L), aggregates(), context = Tx, context = Tx)]
        struct View<T>(T);
    };
    let invalid = super::projection::try_expand(&input).expect_err("invalid input");
    let messages: Vec<String> = invalid.errors.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 7, "{messages:#?}");
}

/// The stub emitted beside the errors of an invalid event: `impl Event`
/// with the parsed name and version, and the name check.
#[test]
fn event_fallback() {
    let input = parse_quote! {
        #[event(name = "ticket-opened", version = 2, verison = 3)]
        pub struct TicketOpened { pub title: String }
    };
    let invalid = super::event::try_expand(&input).expect_err("invalid input");
    insta::assert_snapshot!(pretty(invalid.stub));
}

/// The stub emitted beside the errors of an invalid aggregate: the enum of
/// every listed event that can be a variant (here not `b::Opened`, whose
/// variant name `Opened` is taken, nor `Generic<u8>`), their conversions,
/// and stub impls.
#[test]
fn aggregate_fallback() {
    let input = parse_quote! {
        #[aggregate(name = "ticket", events(Opened, b::Opened, Generic<u8>, Closed), snapshot(every = 0))]
        pub struct Ticket { open: bool }
    };
    let invalid = super::aggregate::try_expand(&input).expect_err("invalid input");
    insta::assert_snapshot!(pretty(invalid.stub));
}

/// A generic aggregate (refused) gets stubs that cannot fail on its
/// parameters, and no `IntoEvents` (which would need `Ticket<T>: Aggregate`).
#[test]
fn generic_aggregate_fallback_is_bounded() {
    let input = parse_quote! {
        #[aggregate(events(Opened))]
        pub struct Ticket<T> { data: T }
    };
    let invalid = super::aggregate::try_expand(&input).expect_err("invalid input");
    let stub = invalid.stub.to_string();
    let bounded = "impl < T > :: es_core :: Aggregate for Ticket < T > where for < '__es_w > Ticket < T > : :: es_core :: __private :: Default";
    assert!(stub.contains(bounded), "{stub}");
    assert!(!stub.contains("IntoEvents"), "{stub}");
}

/// Many events, some with paths: the output is the same on every run, and
/// the enum variants, `EVENTS` and `index` all follow the source order (a
/// set or map iterated on the way would break both).
#[test]
fn expansion_is_deterministic() {
    let names = [
        "Opened", "Zeta", "Alpha", "Moved", "Bravo", "Yankee", "Closed", "Charlie", "Xray",
        "Delta", "Reopened", "Whiskey", "Echo", "Assigned", "Victor", "Foxtrot", "Tagged",
        "Uniform",
    ];
    let paths: Vec<syn::Path> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let text = match i % 3 {
                0 => format!("events::v{i}::{name}"),
                1 => format!("crate::{name}"),
                _ => (*name).to_owned(),
            };
            syn::parse_str(&text).expect("a path")
        })
        .collect();
    let input: DeriveInput = parse_quote! {
        #[aggregate(name = "thing", events(#(#paths),*), snapshot(every = 3))]
        pub struct Thing;
    };
    let first = super::aggregate::try_expand(&input)
        .expect("valid")
        .to_string();
    for _ in 0..8 {
        let again = super::aggregate::try_expand(&input)
            .expect("valid")
            .to_string();
        assert_eq!(first, again);
    }

    let file: syn::File = syn::parse_str(&first).expect("the expansion parses");
    let path_texts: Vec<String> = paths.iter().map(text).collect();

    let variants: Vec<String> = file
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Enum(e) if e.ident == "ThingEvent" => Some(e),
            _ => None,
        })
        .expect("the event enum")
        .variants
        .iter()
        .map(|v| {
            let field = v.fields.iter().next().expect("one field");
            format!("{} {}", v.ident, text(&field.ty))
        })
        .collect();
    let expected: Vec<String> = names
        .iter()
        .zip(&path_texts)
        .map(|(name, path)| format!("{name} {path}"))
        .collect();
    assert_eq!(variants, expected, "enum variants in source order");

    let event_set = event_set_impl(&file);
    let events = event_set
        .items
        .iter()
        .find_map(|item| match item {
            syn::ImplItem::Const(c) if c.ident == "EVENTS" => Some(&c.expr),
            _ => None,
        })
        .expect("EVENTS");
    let syn::Expr::Reference(syn::ExprReference { expr, .. }) = events else {
        panic!("EVENTS is `&[...]`: {}", text(events));
    };
    let syn::Expr::Array(array) = &**expr else {
        panic!("EVENTS is `&[...]`: {}", text(expr));
    };
    let keys: Vec<String> = array.elems.iter().map(text).collect();
    let expected: Vec<String> = path_texts
        .iter()
        .map(|p| format!(":: es_core :: EventKey :: of :: < {p} > ()"))
        .collect();
    assert_eq!(keys, expected, "EVENTS in source order");

    let index = event_set
        .items
        .iter()
        .find_map(|item| match item {
            syn::ImplItem::Fn(f) if f.sig.ident == "index" => Some(text(&f.block)),
            _ => None,
        })
        .expect("index");
    let mut at = 0;
    for (i, name) in names.iter().enumerate() {
        let arm = format!("ThingEvent :: {name} (_) => {i}usize");
        let found = index[at..]
            .find(&arm)
            .unwrap_or_else(|| panic!("`{arm}` after byte {at} of {index}"));
        at += found + arm.len();
    }
}

fn text(tokens: &impl ToTokens) -> String {
    tokens.to_token_stream().to_string()
}

/// The `impl EventSet` inside the expansion's `const _: () = { ... };`.
fn event_set_impl(file: &syn::File) -> &syn::ItemImpl {
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Const(c) => match &*c.expr {
                syn::Expr::Block(block) => Some(&block.block.stmts),
                _ => None,
            },
            _ => None,
        })
        .flatten()
        .find_map(|stmt| match stmt {
            syn::Stmt::Item(syn::Item::Impl(imp))
                if imp
                    .trait_
                    .as_ref()
                    .and_then(|(path, _)| path.segments.last())
                    .is_some_and(|s| s.ident == "EventSet") =>
            {
                Some(imp)
            }
            _ => None,
        })
        .expect("impl EventSet")
}

#[test]
fn all_errors_of_one_input_are_reported() {
    let input: DeriveInput = parse_quote! {
        #[aggregate(nme = "x", events(A, A), snapshot(every = 0))]
        struct Thing<T>(T);
    };
    let invalid = super::aggregate::try_expand(&input).expect_err("invalid input");
    let messages: Vec<String> = invalid.errors.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
}
