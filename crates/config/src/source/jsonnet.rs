//! Jsonnet evaluation (rsjsonnet-lang). A top-level function is called with the named argument
//! `ctx`; any other top-level value is the config as is. Imports are refused: the config is one
//! file, and the gateway must never read its own filesystem on a user's behalf.

use std::sync::LazyLock;

use regex::Regex;
use rsjsonnet_lang::arena::Arena;
use rsjsonnet_lang::interner::InternedStr;
use rsjsonnet_lang::lexer::LexError;
use rsjsonnet_lang::parser::ParseError;
use rsjsonnet_lang::program::{
    AnalyzeError, Callbacks, EvalError, EvalErrorKind, EvalStackTraceItem, ImportError, LoadError,
    NativeError, Program, Thunk, Value,
};
use rsjsonnet_lang::span::{SpanContextId, SpanId};

use super::{EvalLimits, invalid, line_column};
use crate::context::RefContext;
use crate::error::{Error, Result};

struct NoImports;

impl<'p> Callbacks<'p> for NoImports {
    fn import(
        &mut self,
        _program: &mut Program<'p>,
        _from: SpanId,
        _path: &str,
    ) -> Result<Thunk<'p>, ImportError> {
        Err(ImportError)
    }

    fn import_str(
        &mut self,
        _program: &mut Program<'p>,
        _from: SpanId,
        _path: &str,
    ) -> Result<String, ImportError> {
        Err(ImportError)
    }

    fn import_bin(
        &mut self,
        _program: &mut Program<'p>,
        _from: SpanId,
        _path: &str,
    ) -> Result<Vec<u8>, ImportError> {
        Err(ImportError)
    }

    // std.trace output is dropped: the gateway has nowhere useful to show it
    fn trace(&mut self, _program: &mut Program<'p>, _message: &str, _stack: &[EvalStackTraceItem]) {
    }

    fn native_call(
        &mut self,
        _program: &mut Program<'p>,
        _name: InternedStr<'p>,
        _args: &[Value<'p>],
    ) -> Result<Value<'p>, NativeError> {
        Err(NativeError)
    }
}

/// What error positions are resolved against.
struct Src<'a> {
    ctx: SpanContextId,
    data: &'a [u8],
    base: Option<usize>,
}

/// Evaluates a Jsonnet config into JSON text.
pub(super) fn evaluate(data: &[u8], ctx: &RefContext, limits: &EvalLimits) -> Result<String> {
    let arena = Arena::new();
    let mut program = Program::new(&arena);
    program.set_max_stack(limits.max_call_depth);
    let mut callbacks = NoImports;
    let (span_ctx, _) = program.span_manager_mut().insert_source_context(data.len());
    // where offset 0 of the config lies in the global offsets error kinds print
    let base = first_offset(&format!(
        "{:?}",
        program.span_manager_mut().intern_span(span_ctx, 0, 0)
    ));
    let src = Src {
        ctx: span_ctx,
        data,
        base,
    };
    let thunk = program
        .load_source(span_ctx, data, true, "config.jsonnet")
        .map_err(|e| load_error(&program, &src, &e))?;
    let value = program
        .eval_value(&thunk, &mut callbacks)
        .map_err(|e| eval_error(&program, &src, &e))?;
    let value = if value.is_function() {
        let fields: Vec<(InternedStr<'_>, Value<'_>)> = ctx
            .fields()
            .iter()
            .map(|(k, v)| (program.intern_str(k), Value::string(v)))
            .collect();
        let ctx_value = program.make_object(&fields);
        let ctx_thunk = program.value_to_thunk(&ctx_value);
        let func = program.value_to_thunk(&value);
        let name = program.intern_str("ctx");
        program
            .eval_call(&func, &[], &[(name, ctx_thunk)], &mut callbacks)
            .map_err(|e| eval_error(&program, &src, &e))?
    } else {
        value
    };
    program
        .manifest_json(&value, false)
        .map_err(|e| eval_error(&program, &src, &e))
}

fn position(program: &Program<'_>, src: &Src<'_>, span: SpanId) -> Option<(usize, usize)> {
    let (ctx, start, _) = program.span_manager().get_span(span);
    // spans of the standard library point into another source
    (ctx == src.ctx).then(|| line_column(src.data, start))
}

/// Span ids print as `Inline { offset: N, len: M }` (global offsets) or `Interned(N)`.
static SPAN_DEBUG: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(\w+: )?(Some\()?(Inline \{ offset: (\d+), len: \d+ \}|Interned\(\d+\))\)?(, )?")
        .ok()
});

/// Debug output of rsjsonnet errors without the span ids, which mean nothing to users.
fn describe(debug: &str) -> String {
    match SPAN_DEBUG.as_ref() {
        Some(re) => re.replace_all(debug, "").replace(" { }", ""),
        None => debug.to_owned(),
    }
}

/// The global offset of the first inline span in a Debug output: error kinds have too many
/// variants to match them one by one, and every one of them prints its span this way.
fn first_offset(debug: &str) -> Option<usize> {
    let re = SPAN_DEBUG.as_ref()?;
    re.captures_iter(debug)
        .find_map(|c| c.get(4).and_then(|m| m.as_str().parse().ok()))
}

fn with_position(message: String, pos: Option<(usize, usize)>) -> Error {
    invalid(message, pos.map(|p| p.0), pos.map(|p| p.1))
}

fn load_error(program: &Program<'_>, src: &Src<'_>, e: &LoadError) -> Error {
    let span = match e {
        LoadError::Lex(l) => lex_span(l),
        LoadError::Parse(ParseError::Expected { span, .. }) => Some(*span),
        LoadError::Analyze(a) => Some(analyze_span(a)),
    };
    let pos = span.and_then(|s| position(program, src, s));
    with_position(
        format!("invalid jsonnet: {}", describe(&format!("{e:?}"))),
        pos,
    )
}

fn lex_span(e: &LexError) -> Option<SpanId> {
    match e {
        LexError::InvalidChar { span, .. }
        | LexError::InvalidUtf8 { span, .. }
        | LexError::UnfinishedMultilineComment { span }
        | LexError::LeadingZeroInNumber { span }
        | LexError::MissingFracDigits { span }
        | LexError::MissingExpDigits { span }
        | LexError::MissingDigitAfterUnderscore { span }
        | LexError::ExpOverflow { span }
        | LexError::InvalidEscapeInString { span, .. }
        | LexError::IncompleteUnicodeEscape { span }
        | LexError::InvalidUtf16EscapeSequence { span, .. }
        | LexError::UnfinishedString { span }
        | LexError::MissingLineBreakAfterTextBlockStart { span }
        | LexError::MissingWhitespaceTextBlockStart { span }
        | LexError::InvalidTextBlockTermination { span } => Some(*span),
    }
}

fn analyze_span(e: &AnalyzeError) -> SpanId {
    match e {
        AnalyzeError::UnknownVariable { span, .. }
        | AnalyzeError::TextBlockAsImportPath { span }
        | AnalyzeError::ComputedImportPath { span } => *span,
        AnalyzeError::SelfOutsideObject { self_span } => *self_span,
        AnalyzeError::SuperOutsideObject { super_span } => *super_span,
        AnalyzeError::DollarOutsideObject { dollar_span } => *dollar_span,
        AnalyzeError::RepeatedLocalName { repeated_span, .. }
        | AnalyzeError::RepeatedFieldName { repeated_span, .. }
        | AnalyzeError::RepeatedParamName { repeated_span, .. } => *repeated_span,
        AnalyzeError::PositionalArgAfterNamed { arg_span } => *arg_span,
    }
}

fn eval_error(program: &Program<'_>, src: &Src<'_>, e: &EvalError) -> Error {
    let message = match &e.kind {
        EvalErrorKind::ExplicitError { message, .. } => format!("jsonnet error: {message}"),
        EvalErrorKind::ImportFailed { path, .. } => {
            format!("jsonnet imports are not supported (import of {path:?})")
        }
        other => format!(
            "jsonnet evaluation failed: {}",
            describe(&format!("{other:?}"))
        ),
    };
    let spans = e.stack_trace.iter().filter_map(|item| match item {
        EvalStackTraceItem::Expr { span }
        | EvalStackTraceItem::Variable { span, .. }
        | EvalStackTraceItem::Import { span } => Some(*span),
        EvalStackTraceItem::Call { span, .. }
        | EvalStackTraceItem::ArrayItem { span, .. }
        | EvalStackTraceItem::ObjectField { span, .. } => *span,
        _ => None,
    });
    // the span of the kind itself, else the innermost frame of the config
    let kind_pos = first_offset(&format!("{:?}", e.kind)).and_then(|offset| {
        let start = offset.checked_sub(src.base?)?;
        (start < src.data.len()).then(|| line_column(src.data, start))
    });
    let pos = kind_pos.or_else(|| spans.into_iter().find_map(|s| position(program, src, s)));
    with_position(message, pos)
}
