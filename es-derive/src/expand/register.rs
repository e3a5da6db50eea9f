//! The only place that emits registry submissions.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, Path};

/// Registers event type `ident` in the process-wide registry.
pub(crate) fn event(krate: &Path, ident: &Ident) -> TokenStream {
    quote! {
        #krate::__private::submit! {
            #krate::__private::EventRegistration::of::<#ident>()
        }
    }
}

/// Registers aggregate `ident` (with the events it lists).
pub(crate) fn aggregate(krate: &Path, ident: &Ident) -> TokenStream {
    quote! {
        #krate::__private::submit! {
            #krate::__private::AggregateRegistration::of::<#ident>()
        }
    }
}
