//! `#[derive(Event)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;
use syn::spanned::Spanned;

use super::{register, respan};
use crate::ast::EventInput;
use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let event = EventInput::from_syn(&cx, input);
    cx.check()?;
    Ok(expand(&event))
}

fn expand(event: &EventInput<'_>) -> TokenStream {
    let EventInput {
        ident,
        name,
        version,
        krate,
        ..
    } = event;
    let private = quote!(#krate::__private);
    let (decode, versions, check) = match &event.upcast_from {
        None => (
            quote!(#private::decode_exact::<Self>(version, payload)),
            quote!(),
            quote!(),
        ),
        Some(prev) => {
            // Spanned at the user's `upcast_from = X`, so a missing `From<X>`
            // or a mismatched name or version is reported there.
            let span = prev.span();
            let check = respan(
                quote!(const _: () = #private::check_upcast::<#ident, #prev>();),
                span,
            );
            let versions = quote! {
                fn decodable_versions() -> #private::Vec<u32> {
                    #private::upcast_versions::<Self, #prev>()
                }
            };
            let decode = respan(quote!(#private::decode_upcast::<#ident, #prev>), span);
            (quote!(#decode(version, payload)), versions, check)
        }
    };
    let registration = register::event(krate, ident);
    let name_check = respan(
        quote!(const _: () = #private::check_event_name(<#ident as #krate::Event>::NAME);),
        event.name_span,
    );
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;

                fn decode(version: u32, payload: &str) -> #private::Result<Self, #krate::DecodeError> {
                    #decode
                }

                #versions
            }

            #check
            #name_check
            #registration
        };
    }
}
