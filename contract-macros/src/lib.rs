//! `#[falsifier("FALSIFY-...")]`: binds a test function to a falsifier entry of a contract.
//!
//! ```ignore
//! #[falsifier("FALSIFY-QK-DEQ-001")]
//! fn dequant_matches_gguf_py(ctx: &mut Ctx) -> FalsifierResult { ... }
//! ```
//!
//! At compile time the macro loads the contracts (the folders `pv.toml` names, found upward from
//! the crate's manifest folder; `$PV_CONTRACTS_DIR`, relative to the manifest folder when
//! relative, overrides them), finds the id, and emits a `#[test]` function of the same name that calls
//! `pv_evidence::run_falsifier` with the falsifier's metadata (thresholds, tier, gate, contract
//! hash, `if_fails`) embedded, so thresholds live only in YAML. The gate becomes attributes:
//!
//! - `gate.features` -> `#[cfg(all(feature = "..."))]`;
//! - `tier: hardware` or `gate.devices` -> `#[ignore = "needs ..."]` unless every device was in
//!   `$PV_DEVICES` (comma-separated) when the test crate was compiled (a hardware-tier falsifier
//!   with no listed device needs `hardware` in `$PV_DEVICES`).
//!
//! Errors at the id string: an unknown id (with the nearest known ids), an unreadable contract.
//! A literal metric name passed to `ctx.metric("...")` that the contract does not list is an
//! error at that literal. A retired falsifier gives a deprecation warning.
//!
//! Rebuilds: the expansion contains `include_bytes!` of the contract file, and
//! `option_env!("PV_DEVICES")` / `option_env!("PV_CONTRACTS_DIR")`, so rustc records the
//! contract file and both variables in the crate's dep-info and cargo rebuilds the test crate
//! when any of them changes. (A contract file that is *added* is picked up through the test
//! crate's `build.rs`, `pv_build::generate()`, which watches the contract folders.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use proc_macro::TokenStream;
use proc_macro2::{Literal, TokenStream as TokenStream2, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::{parse_macro_input, ItemFn, LitStr};

/// Binds the function to a contract falsifier; see the crate documentation.
#[proc_macro_attribute]
pub fn falsifier(attr: TokenStream, item: TokenStream) -> TokenStream {
    let id = parse_macro_input!(attr as LitStr);
    let func = parse_macro_input!(item as ItemFn);
    match expand(&id, func) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// What the macro needs from one falsifier entry.
#[derive(Clone)]
struct Info {
    id: String,
    claim_sha256: String,
    contract: String,
    version: String,
    file: PathBuf,
    sha256: String,
    tier: pv_contract::Tier,
    features: Vec<String>,
    devices: Vec<String>,
    fixtures: Vec<String>,
    metrics: Vec<pv_contract::Metric>,
    if_fails: String,
    retired: Option<String>,
}

/// All falsifiers of a contracts directory, plus files that failed to load.
struct Catalog {
    falsifiers: HashMap<String, Info>,
    broken: Vec<String>,
}

type Signature = Vec<(PathBuf, Option<SystemTime>)>;
type CatalogCache = HashMap<PathBuf, (Signature, Arc<Catalog>)>;

/// Loads (and caches, per compiler process, keyed by file names and mtimes) the catalog. Each
/// file is loaded on its own so that one broken contract does not hide the others' falsifiers.
fn catalog(dirs: &[PathBuf]) -> Result<Arc<Catalog>, String> {
    static CACHE: Mutex<Option<CatalogCache>> = Mutex::new(None);
    let mut files = Vec::new();
    for dir in dirs {
        files.extend(
            pv_contract::load::contract_files(dir)
                .map_err(|e| format!("cannot list contracts in {}: {e}", dir.display()))?,
        );
    }
    if files.is_empty() {
        return Err(format!("no contract files (*.yaml) in {}", shown(dirs)));
    }
    let key = PathBuf::from(shown(dirs));
    let sig: Signature = files
        .iter()
        .map(|f| {
            (
                f.clone(),
                std::fs::metadata(f).and_then(|m| m.modified()).ok(),
            )
        })
        .collect();
    let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some((s, c)) = cache.get(&key) {
        if *s == sig {
            return Ok(c.clone());
        }
    }
    let mut falsifiers = HashMap::new();
    let mut broken = Vec::new();
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                broken.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        match pv_contract::load_file(file) {
            Ok(loaded) => {
                let c = &loaded.contract;
                let sha256 = pv_contract::digest::content_hash(&bytes);
                for f in &c.falsifiers {
                    falsifiers.entry(f.id.clone()).or_insert_with(|| Info {
                        id: f.id.clone(),
                        claim_sha256: pv_contract::digest::claim_digest(c, f),
                        contract: c.contract.clone(),
                        version: c.version.clone(),
                        file: file.clone(),
                        sha256: sha256.clone(),
                        tier: f.tier,
                        features: f.gate.features.clone(),
                        devices: f.gate.devices.clone(),
                        fixtures: f.gate.fixtures.clone(),
                        metrics: f.metrics.clone(),
                        if_fails: f.if_fails.clone(),
                        retired: f.retired.clone(),
                    });
                }
            }
            Err(e) => broken.push(e.to_string()),
        }
    }
    let cat = Arc::new(Catalog { falsifiers, broken });
    cache.insert(key, (sig, cat.clone()));
    Ok(cat)
}

/// The contract folders and the project root: `$PV_CONTRACTS_DIR` if set, else `pv.toml`'s.
fn contracts_dirs(manifest_dir: &Path) -> Result<(Vec<PathBuf>, PathBuf), String> {
    let project = pv_project::Project::discover(manifest_dir).map_err(|e| e.to_string())?;
    let dirs = match std::env::var_os("PV_CONTRACTS_DIR") {
        Some(d) if !d.is_empty() => vec![manifest_dir.join(PathBuf::from(d))],
        _ => project.contract_dirs(),
    };
    Ok((dirs, project.root))
}

fn shown(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The known ids nearest to `id` by edit distance (at most three).
fn nearest<'a>(id: &str, known: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut v: Vec<(usize, &str)> = known
        .map(|k| (strsim::levenshtein(id, k), k.as_str()))
        .collect();
    v.sort();
    v.into_iter().take(3).map(|(_, k)| k).collect()
}

fn expand(id_lit: &LitStr, func: ItemFn) -> syn::Result<TokenStream2> {
    let id = id_lit.value();
    let span = id_lit.span();
    check_signature(&func)?;

    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .ok_or_else(|| syn::Error::new(span, "CARGO_MANIFEST_DIR is not set"))?,
    );
    let (dirs, workspace) = contracts_dirs(&manifest_dir).map_err(|e| syn::Error::new(span, e))?;
    let cat = catalog(&dirs).map_err(|e| syn::Error::new(span, e))?;
    let Some(info) = cat.falsifiers.get(&id) else {
        let near = nearest(&id, cat.falsifiers.keys());
        let mut msg = format!(
            "unknown falsifier `{id}`: no contract in {} defines it",
            shown(&dirs)
        );
        if !near.is_empty() {
            msg.push_str(&format!(
                "\nhelp: the nearest known ids are: {}",
                near.join(", ")
            ));
        }
        if !cat.broken.is_empty() {
            msg.push_str("\nnote: these contract files did not load, and may define it:");
            for b in &cat.broken {
                msg.push_str(&format!("\n  {b}"));
            }
        }
        return Err(syn::Error::new(span, msg));
    };
    check_metric_literals(
        info,
        func.block
            .stmts
            .iter()
            .map(quote::ToTokens::to_token_stream),
    )?;

    let contract_file = info
        .file
        .canonicalize()
        .unwrap_or_else(|_| info.file.clone());
    let contract_rel = contract_file
        .strip_prefix(workspace.canonicalize().unwrap_or(workspace.clone()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| contract_file.to_string_lossy().into_owned());
    let contract_abs = contract_file.to_string_lossy().into_owned();

    // --- attributes from the gate ---
    let cfg = if info.features.is_empty() {
        quote!()
    } else {
        let fs = &info.features;
        quote!(#[cfg(all(#(feature = #fs),*))])
    };
    let hardware = info.tier == pv_contract::Tier::Hardware;
    let needed: Vec<String> = if info.devices.is_empty() && hardware {
        vec!["hardware".to_string()]
    } else {
        info.devices.clone()
    };
    let seen: Vec<String> = std::env::var("PV_DEVICES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let missing: Vec<&String> = needed.iter().filter(|d| !seen.contains(d)).collect();
    let ignore = if missing.is_empty() {
        quote!()
    } else {
        let reason = format!(
            "needs {}: {id} is tier {} (devices: {}); build with PV_DEVICES={} and run with --include-ignored",
            needed.join(", "),
            if hardware { "hardware" } else { "algorithm" },
            needed.join(", "),
            needed.join(","),
        );
        quote!(#[ignore = #reason])
    };
    let name = &func.sig.ident;
    let body_ident = format_ident!("__pv_falsifier_{}", name);
    let retired = match &info.retired {
        Some(reason) => {
            let note = format!(
                "{id} is retired ({reason}); a retired falsifier's test no longer counts: delete it"
            );
            let flag = format_ident!("__pv_retired_{}", name);
            quote_spanned! {span=>
                #[deprecated(note = #note)]
                #[allow(non_upper_case_globals, dead_code)]
                const #flag: () = ();
                #[allow(dead_code)]
                const _: () = #flag;
            }
        }
        None => quote!(),
    };

    // --- the metadata ---
    let metric_specs = info
        .metrics
        .iter()
        .map(|m| {
            let name = &m.name;
            if !m.threshold.is_finite() {
                return Err(syn::Error::new(
                    span,
                    format!("{id}: metric `{name}` has a non-finite threshold"),
                ));
            }
            let threshold = Literal::f64_suffixed(m.threshold);
            let op = match m.op {
                pv_contract::Op::Lt => quote!(Lt),
                pv_contract::Op::Le => quote!(Le),
                pv_contract::Op::Gt => quote!(Gt),
                pv_contract::Op::Ge => quote!(Ge),
                pv_contract::Op::Eq => quote!(Eq),
            };
            let unit = match &m.unit {
                Some(u) => quote!(::core::option::Option::Some(#u)),
                None => quote!(::core::option::Option::None),
            };
            Ok(quote! {
                ::pv_evidence::MetricSpec {
                    name: #name,
                    op: ::pv_evidence::Op::#op,
                    threshold: #threshold,
                    unit: #unit,
                }
            })
        })
        .collect::<syn::Result<Vec<_>>>()?;
    let tier = if hardware {
        quote!(::pv_evidence::Tier::Hardware)
    } else {
        quote!(::pv_evidence::Tier::Algorithm)
    };
    let (contract, version, sha256, if_fails) =
        (&info.contract, &info.version, &info.sha256, &info.if_fails);
    let claim_sha256 = &info.claim_sha256;
    let (devices, fixtures) = (&info.devices, &info.fixtures);

    let vis = &func.vis;
    let attrs = &func.attrs;
    let mut body_sig = func.sig.clone();
    body_sig.ident = body_ident.clone();
    let block = &func.block;

    // The body is a module-level function (not nested in the test), so that it is type-checked
    // in every build, not only under `cargo test`.
    Ok(quote! {
        #retired

        #cfg
        #[doc(hidden)]
        #[allow(dead_code)]
        #body_sig #block

        #(#attrs)*
        #[test]
        #cfg
        #ignore
        #vis fn #name() {
            // Rebuild this test when the contract file or the build-time gates change.
            const _: &[u8] = include_bytes!(#contract_abs);
            const _: ::core::option::Option<&str> = option_env!("PV_DEVICES");
            const _: ::core::option::Option<&str> = option_env!("PV_CONTRACTS_DIR");
            static META: ::pv_evidence::FalsifierMeta = ::pv_evidence::FalsifierMeta {
                id: #id,
                contract: #contract,
                contract_version: #version,
                contract_path: #contract_rel,
                contract_sha256: #sha256,
                falsifier_sha256: #claim_sha256,
                tier: #tier,
                metrics: &[#(#metric_specs),*],
                devices: &[#(#devices),*],
                fixtures: &[#(#fixtures),*],
                if_fails: #if_fails,
                test_name: concat!(module_path!(), "::", stringify!(#name)),
                test_file: file!(),
                manifest_dir: env!("CARGO_MANIFEST_DIR"),
            };
            ::pv_evidence::run_falsifier(&META, #body_ident);
        }
    })
}

fn check_signature(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.asyncness.is_some() || !sig.generics.params.is_empty() || sig.inputs.len() != 1 {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a falsifier test is `fn name(ctx: &mut Ctx) -> FalsifierResult` (not async, no generics, one argument)",
        ));
    }
    if matches!(sig.output, syn::ReturnType::Default) {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a falsifier test returns `FalsifierResult` (use `Ok(())` at the end)",
        ));
    }
    if let Some(a) = func.attrs.iter().find(|a| a.path().is_ident("test")) {
        return Err(syn::Error::new_spanned(
            a,
            "remove #[test]: #[falsifier] already makes the function a test",
        ));
    }
    Ok(())
}

/// Finds `metric("literal"` in the body and checks each literal against the contract.
fn check_metric_literals(
    info: &Info,
    stmts: impl Iterator<Item = TokenStream2>,
) -> syn::Result<()> {
    fn walk(ts: TokenStream2, info: &Info, errs: &mut Option<syn::Error>) {
        let toks: Vec<TokenTree> = ts.into_iter().collect();
        for (i, t) in toks.iter().enumerate() {
            let TokenTree::Group(g) = t else { continue };
            let after_metric = i
                .checked_sub(1)
                .and_then(|j| toks.get(j))
                .is_some_and(|p| matches!(p, TokenTree::Ident(id) if id == "metric"));
            if after_metric && g.delimiter() == proc_macro2::Delimiter::Parenthesis {
                if let Some(TokenTree::Literal(lit)) = g.stream().into_iter().next() {
                    check_one(&lit, info, errs);
                }
            }
            walk(g.stream(), info, errs);
        }
    }
    fn check_one(lit: &Literal, info: &Info, errs: &mut Option<syn::Error>) {
        let Ok(s) = syn::parse_str::<LitStr>(&lit.to_string()) else {
            return;
        };
        let name = s.value();
        if info.metrics.iter().any(|m| m.name == name) {
            return;
        }
        let names: Vec<String> = info.metrics.iter().map(|m| m.name.clone()).collect();
        let near = nearest(&name, names.iter());
        let e = syn::Error::new(
            lit.span(),
            format!(
                "metric `{name}` is not listed by {} in contract {} (it lists: {}){}",
                info.id,
                info.contract,
                names.join(", "),
                near.first()
                    .map(|n| format!("\nhelp: did you mean `{n}`?"))
                    .unwrap_or_default()
            ),
        );
        match errs {
            Some(all) => all.combine(e),
            None => *errs = Some(e),
        }
    }
    let mut errs = None;
    for s in stmts {
        walk(s, info, &mut errs);
    }
    errs.map_or(Ok(()), Err)
}
