//! The SQL tokenizer: statement text to a flat list of [`Token`]s, each with its byte span.
//!
//! It is pure (text in, tokens out) and knows nothing of the grammar beyond the reserved
//! words. Whitespace, `--` line comments and non-nesting `/* … */` block comments are
//! skipped. Words that are [`Keyword`]s (the small reserved list) become
//! [`TokenKind::Keyword`]; every other unquoted word is an [`TokenKind::Ident`] kept as
//! written, so the parser can still recognise non-reserved words such as `TABLE`, `KEY` or
//! `COUNT` by spelling and upper-case the rest as names. `"quoted"` identifiers and
//! `'string'` literals have their doubled quote (`""`, `''`) unescaped. Numbers are kept as
//! their text: the parser converts them, because only it knows whether a `-` precedes an
//! integer (so that `-9223372036854775808` fits) and where to report an overflow.
//!
//! A number running straight into a letter, `_` or another `.` (`12abc`, `1.2.3`) is one
//! [`TokenKind::MalformedNumber`] token rather than two tokens (which would make `12abc` read
//! as `12 AS abc`). The lexer does not reject it: the parser reports it as
//! `malformed number …` wherever it meets it, except in a grid node name, where
//! `10.0.0.1:1316` is legitimate text (a malformed number, `:` and an integer). In the same
//! spirit `.` and `:` are tokens of their own, although only node names use them.
//!
//! Every error is a [`SolidError::syntax`] whose message starts with
//! `Syntax error at line L, column C:` (1-based; the column counts characters). An
//! unterminated string, quoted identifier or comment is reported where it starts.

use std::fmt;

use crate::error::SolidError;

/// Most tokens one statement may have (not counting the end-of-input token).
///
/// Bounds the memory and time one statement can cost the parser: at roughly 50 bytes a
/// token this is a few MiB, and it still admits a bulk `INSERT` of several thousand rows of
/// ten values. Longer input is rejected with a syntax error at the first token past the limit.
pub const MAX_STATEMENT_TOKENS: usize = 100_000;

/// A half-open byte range `start..end` of the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// One token and where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// An unquoted word that is not reserved, exactly as written (not yet upper-cased).
    Ident(String),
    /// A `"quoted"` identifier: the text between the quotes with `""` unescaped. Never empty.
    QuotedIdent(String),
    /// A reserved word, written in any case.
    Keyword(Keyword),
    /// Decimal digits only, e.g. `42`. Not range-checked here (see the module docs).
    Integer(String),
    /// A number with a decimal point or an exponent, e.g. `1.5`, `.5`, `2.`, `1e-3`.
    Decimal(String),
    /// A number running straight into a letter, `_` or another `.`, as written: `12abc`,
    /// `1.2.3`, `10.0.0.1`. Never a value; the parser accepts it only inside a node name.
    MalformedNumber(String),
    /// A `'string'` literal: the text between the quotes with `''` unescaped.
    String(String),
    LParen,
    RParen,
    Comma,
    Semicolon,
    /// `.` not starting a number (only node names such as `db1.example.com` use it).
    Dot,
    /// `:` (only node names such as `localhost:1316` use it).
    Colon,
    Star,
    Plus,
    Minus,
    Slash,
    Eq,
    /// `<>` or `!=`.
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// End of input; always the last token.
    Eof,
}

impl TokenKind {
    /// Whether the token is punctuation or an operator (shown quoted in error messages).
    pub fn is_symbol(&self) -> bool {
        !matches!(
            self,
            TokenKind::Ident(_)
                | TokenKind::QuotedIdent(_)
                | TokenKind::Keyword(_)
                | TokenKind::Integer(_)
                | TokenKind::Decimal(_)
                | TokenKind::MalformedNumber(_)
                | TokenKind::String(_)
                | TokenKind::Eof
        )
    }
}

/// The reserved words: they can only be used as names when quoted (`"ORDER"`).
///
/// The list is kept small on purpose. A word is reserved when it begins a statement
/// (`SELECT` … `ADMIN`), begins a clause (`FROM` … `AS`), or would be ambiguous as a column
/// name inside an expression (`AND` … `FALSE`). Everything else the grammar uses — `TABLE`,
/// `USER`, `COLUMN`, `PRIMARY`, `KEY`, `BY`, `ASC`, `DESC`, `TO`, `IDENTIFIED`, `COMMAND`,
/// the type names, the aggregate names and `TIMESTAMP` — is recognised by spelling in
/// context and stays usable as a plain name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    Select,
    Insert,
    Update,
    Delete,
    Create,
    Drop,
    Alter,
    Grant,
    Admin,
    From,
    Where,
    Order,
    Limit,
    Into,
    Values,
    Set,
    As,
    And,
    Or,
    Not,
    Is,
    Null,
    True,
    False,
}

impl Keyword {
    /// Every reserved word.
    pub const ALL: [Keyword; 24] = [
        Keyword::Select,
        Keyword::Insert,
        Keyword::Update,
        Keyword::Delete,
        Keyword::Create,
        Keyword::Drop,
        Keyword::Alter,
        Keyword::Grant,
        Keyword::Admin,
        Keyword::From,
        Keyword::Where,
        Keyword::Order,
        Keyword::Limit,
        Keyword::Into,
        Keyword::Values,
        Keyword::Set,
        Keyword::As,
        Keyword::And,
        Keyword::Or,
        Keyword::Not,
        Keyword::Is,
        Keyword::Null,
        Keyword::True,
        Keyword::False,
    ];

    /// The word in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Select => "SELECT",
            Keyword::Insert => "INSERT",
            Keyword::Update => "UPDATE",
            Keyword::Delete => "DELETE",
            Keyword::Create => "CREATE",
            Keyword::Drop => "DROP",
            Keyword::Alter => "ALTER",
            Keyword::Grant => "GRANT",
            Keyword::Admin => "ADMIN",
            Keyword::From => "FROM",
            Keyword::Where => "WHERE",
            Keyword::Order => "ORDER",
            Keyword::Limit => "LIMIT",
            Keyword::Into => "INTO",
            Keyword::Values => "VALUES",
            Keyword::Set => "SET",
            Keyword::As => "AS",
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Not => "NOT",
            Keyword::Is => "IS",
            Keyword::Null => "NULL",
            Keyword::True => "TRUE",
            Keyword::False => "FALSE",
        }
    }

    /// The reserved word spelled `word` in any (ASCII) case, if it is one.
    pub fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest piece of statement text quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 40;

impl Token {
    /// The token as an error message shows it: symbols in single quotes, end of input in
    /// words, anything else as written (shortened when long).
    pub fn describe(&self, sql: &str) -> String {
        let text = sql.get(self.span.start..self.span.end).unwrap_or("");
        match self.kind {
            TokenKind::Eof => "end of input".to_string(),
            ref k if k.is_symbol() => format!("'{text}'"),
            _ => shorten(text),
        }
    }
}

/// `text` cut to [`MAX_QUOTED_CHARS`] characters, with `…` when cut.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `sql`. An offset past
/// the end, or inside a character, is clamped to the nearest character start before it.
pub fn line_column(sql: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(sql.len());
    while !sql.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &sql[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A syntax error located at byte `offset` of `sql`: `Syntax error at line L, column C: {detail}`.
pub(crate) fn syntax_error(sql: &str, offset: usize, detail: impl fmt::Display) -> SolidError {
    let (line, column) = line_column(sql, offset);
    SolidError::syntax(format!(
        "Syntax error at line {line}, column {column}: {detail}"
    ))
}

/// Splits `sql` into tokens. The last token is always [`TokenKind::Eof`].
pub fn tokenize(sql: &str) -> Result<Vec<Token>, SolidError> {
    let mut lexer = Lexer { sql, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_trivia()?;
        let start = lexer.pos;
        if start == sql.len() {
            tokens.push(Token {
                kind: TokenKind::Eof,
                span: Span { start, end: start },
            });
            return Ok(tokens);
        }
        if tokens.len() == MAX_STATEMENT_TOKENS {
            return Err(syntax_error(
                sql,
                start,
                format!("statement is too long: more than {MAX_STATEMENT_TOKENS} tokens"),
            ));
        }
        let kind = lexer.token()?;
        tokens.push(Token {
            kind,
            span: Span {
                start,
                end: lexer.pos,
            },
        });
    }
}

/// Whether `c` may start an unquoted identifier.
fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

/// Whether `c` may continue an unquoted identifier (or, after a number, makes it malformed).
fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

struct Lexer<'a> {
    sql: &'a str,
    /// Byte offset of the next unread character; always on a character boundary.
    pos: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.sql[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn bump_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), SolidError> {
        loop {
            let rest = self.rest();
            if rest.starts_with("--") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if let Some(body) = rest.strip_prefix("/*") {
                match body.find("*/") {
                    Some(i) => self.pos += 2 + i + 2,
                    None => {
                        return Err(syntax_error(
                            self.sql,
                            self.pos,
                            "unterminated comment: no closing */ before end of input",
                        ));
                    }
                }
            } else if self.peek().is_some_and(char::is_whitespace) {
                self.bump_while(char::is_whitespace);
            } else {
                return Ok(());
            }
        }
    }

    /// Reads one token; the caller has skipped trivia and checked for end of input.
    fn token(&mut self) -> Result<TokenKind, SolidError> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(TokenKind::Eof);
        };
        if is_ident_start(c) {
            self.bump_while(is_ident_continue);
            let word = &self.sql[start..self.pos];
            return Ok(match Keyword::from_word(word) {
                Some(k) => TokenKind::Keyword(k),
                None => TokenKind::Ident(word.to_string()),
            });
        }
        if c.is_ascii_digit()
            || (c == '.' && self.peek_second().is_some_and(|d| d.is_ascii_digit()))
        {
            return Ok(self.number());
        }
        if c == '\'' {
            return self.quoted('\'', "string literal").map(TokenKind::String);
        }
        if c == '"' {
            let name = self.quoted('"', "quoted identifier")?;
            if name.is_empty() {
                return Err(syntax_error(
                    self.sql,
                    start,
                    "a quoted identifier cannot be empty",
                ));
            }
            return Ok(TokenKind::QuotedIdent(name));
        }
        let two_char = match (c, self.peek_second()) {
            ('<', Some('=')) => Some(TokenKind::LtEq),
            ('<', Some('>')) | ('!', Some('=')) => Some(TokenKind::NotEq),
            ('>', Some('=')) => Some(TokenKind::GtEq),
            _ => None,
        };
        if let Some(kind) = two_char {
            self.pos += 2;
            return Ok(kind);
        }
        let kind = match c {
            '<' => TokenKind::Lt,
            '>' => TokenKind::Gt,
            '=' => TokenKind::Eq,
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            ';' => TokenKind::Semicolon,
            '.' => TokenKind::Dot,
            ':' => TokenKind::Colon,
            '*' => TokenKind::Star,
            '+' => TokenKind::Plus,
            '-' => TokenKind::Minus,
            '/' => TokenKind::Slash,
            _ => {
                return Err(syntax_error(
                    self.sql,
                    start,
                    format!("unexpected character '{}'", c.escape_debug()),
                ));
            }
        };
        self.bump();
        Ok(kind)
    }

    /// `digits [. digits] [e [+|-] digits]` or `. digits [e …]`. A number running straight
    /// into a letter, `_` or another `.` (`12abc`, `1.2.3`) is one
    /// [`TokenKind::MalformedNumber`] rather than two tokens.
    fn number(&mut self) -> TokenKind {
        let start = self.pos;
        let mut decimal = false;
        self.bump_while(|c| c.is_ascii_digit());
        if self.peek() == Some('.') {
            decimal = true;
            self.bump();
            self.bump_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mark = self.pos;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                decimal = true;
                self.bump_while(|c| c.is_ascii_digit());
            } else {
                // The whole run is malformed (see below).
                self.pos = mark;
            }
        }
        if self
            .peek()
            .is_some_and(|c| is_ident_continue(c) || c == '.')
        {
            self.bump_while(|c| is_ident_continue(c) || c == '.');
            return TokenKind::MalformedNumber(self.sql[start..self.pos].to_string());
        }
        let text = self.sql[start..self.pos].to_string();
        if decimal {
            TokenKind::Decimal(text)
        } else {
            TokenKind::Integer(text)
        }
    }

    /// Reads a literal delimited by `quote`, where a doubled quote stands for one.
    fn quoted(&mut self, quote: char, what: &str) -> Result<String, SolidError> {
        let start = self.pos;
        self.pos += quote.len_utf8();
        let mut text = String::new();
        loop {
            let rest = self.rest();
            let Some(i) = rest.find(quote) else {
                return Err(syntax_error(
                    self.sql,
                    start,
                    format!("unterminated {what}: no closing {quote} before end of input"),
                ));
            };
            text.push_str(&rest[..i]);
            self.pos += i + quote.len_utf8();
            if self.peek() == Some(quote) {
                text.push(quote);
                self.pos += quote.len_utf8();
            } else {
                return Ok(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<TokenKind> {
        tokenize(sql).unwrap().into_iter().map(|t| t.kind).collect()
    }

    fn ident(s: &str) -> TokenKind {
        TokenKind::Ident(s.to_string())
    }

    fn err(sql: &str) -> String {
        let e = tokenize(sql).unwrap_err();
        assert_eq!(e.code, crate::error::code::SYNTAX);
        e.message
    }

    #[test]
    fn words_keywords_and_symbols() {
        use TokenKind::*;
        assert_eq!(
            kinds("select a,b FROM t where x<>1 and y != 2 <= >= < > = ( ) ; * + - /"),
            vec![
                Keyword(super::Keyword::Select),
                ident("a"),
                Comma,
                ident("b"),
                Keyword(super::Keyword::From),
                ident("t"),
                Keyword(super::Keyword::Where),
                ident("x"),
                NotEq,
                Integer("1".into()),
                Keyword(super::Keyword::And),
                ident("y"),
                NotEq,
                Integer("2".into()),
                LtEq,
                GtEq,
                Lt,
                Gt,
                Eq,
                LParen,
                RParen,
                Semicolon,
                Star,
                Plus,
                Minus,
                Slash,
                Eof,
            ]
        );
    }

    #[test]
    fn spans_are_byte_offsets() {
        let tokens = tokenize("é  ab 'x'").unwrap();
        assert_eq!(tokens[0].span, Span { start: 0, end: 2 });
        assert_eq!(tokens[1].span, Span { start: 4, end: 6 });
        assert_eq!(tokens[2].span, Span { start: 7, end: 10 });
        assert_eq!(tokens[3].span, Span { start: 10, end: 10 });
    }

    #[test]
    fn identifiers_keep_their_spelling_here() {
        assert_eq!(
            kinds(r#"MixedCase _x1 "Quoted ""Name""" Ünïcode"#),
            vec![
                ident("MixedCase"),
                ident("_x1"),
                TokenKind::QuotedIdent(r#"Quoted "Name""#.into()),
                ident("Ünïcode"),
                TokenKind::Eof,
            ]
        );
        // A quoted reserved word is an identifier.
        assert_eq!(
            kinds(r#""select""#),
            vec![TokenKind::QuotedIdent("select".into()), TokenKind::Eof]
        );
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        assert_eq!(
            kinds("'it''s' '' 'multi\nline'"),
            vec![
                TokenKind::String("it's".into()),
                TokenKind::String(String::new()),
                TokenKind::String("multi\nline".into()),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn numbers() {
        use TokenKind::*;
        assert_eq!(
            kinds("0 42 1.5 .5 2. 1e10 1E-3 2.5e+2 99999999999999999999999"),
            vec![
                Integer("0".into()),
                Integer("42".into()),
                Decimal("1.5".into()),
                Decimal(".5".into()),
                Decimal("2.".into()),
                Decimal("1e10".into()),
                Decimal("1E-3".into()),
                Decimal("2.5e+2".into()),
                Integer("99999999999999999999999".into()),
                Eof,
            ]
        );
    }

    #[test]
    fn a_number_running_into_a_word_is_one_malformed_token() {
        use TokenKind::*;
        // One token, not `12` then `abc` (which would read as `12 AS abc`); the parser
        // rejects it (see `parser::tests::malformed_numbers_are_rejected`).
        assert_eq!(
            kinds("select 12abc 1.2.3 1e+ 1_0 10.0.0.1:1316"),
            vec![
                Keyword(super::Keyword::Select),
                MalformedNumber("12abc".into()),
                MalformedNumber("1.2.3".into()),
                MalformedNumber("1e".into()),
                Plus,
                MalformedNumber("1_0".into()),
                MalformedNumber("10.0.0.1".into()),
                Colon,
                Integer("1316".into()),
                Eof,
            ]
        );
        let sql = "x 1.2.3";
        assert_eq!(tokenize(sql).unwrap()[1].describe(sql), "1.2.3");
    }

    #[test]
    fn dots_and_colons() {
        use TokenKind::*;
        assert_eq!(
            kinds("db-1.x db1.example.com:1316 a. .5 :"),
            vec![
                ident("db"),
                Minus,
                MalformedNumber("1.x".into()),
                ident("db1"),
                Dot,
                ident("example"),
                Dot,
                ident("com"),
                Colon,
                Integer("1316".into()),
                ident("a"),
                Dot,
                Decimal(".5".into()),
                Colon,
                Eof,
            ]
        );
        let sql = "a:b";
        assert_eq!(tokenize(sql).unwrap()[1].describe(sql), "':'");
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            kinds("a -- comment ' \" /*\n b /* block\n -- ' */ c--end"),
            vec![ident("a"), ident("b"), ident("c"), TokenKind::Eof]
        );
        // Block comments do not nest: the first */ ends it.
        assert_eq!(kinds("/* /* */ x"), vec![ident("x"), TokenKind::Eof]);
        // A lone '-' or '/' is an operator.
        assert_eq!(
            kinds("a-b/c"),
            vec![
                ident("a"),
                TokenKind::Minus,
                ident("b"),
                TokenKind::Slash,
                ident("c"),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn unterminated_things_are_reported_where_they_start() {
        assert_eq!(
            err("select\n  'abc"),
            "Syntax error at line 2, column 3: unterminated string literal: no closing ' before end of input"
        );
        assert_eq!(
            err("x \"abc"),
            "Syntax error at line 1, column 3: unterminated quoted identifier: no closing \" before end of input"
        );
        assert_eq!(
            err("a\nbé /* never\n closed"),
            "Syntax error at line 2, column 4: unterminated comment: no closing */ before end of input"
        );
    }

    #[test]
    fn bad_characters_and_empty_quoted_identifiers() {
        assert_eq!(
            err("a ? b"),
            "Syntax error at line 1, column 3: unexpected character '?'"
        );
        assert_eq!(
            err("ab !"),
            "Syntax error at line 1, column 4: unexpected character '!'"
        );
        assert_eq!(
            err("a\n\u{7}"),
            "Syntax error at line 2, column 1: unexpected character '\\u{7}'"
        );
        assert_eq!(
            err(r#"select """#),
            "Syntax error at line 1, column 8: a quoted identifier cannot be empty"
        );
    }

    #[test]
    fn token_limit() {
        let ok = "x ".repeat(MAX_STATEMENT_TOKENS);
        assert_eq!(tokenize(&ok).unwrap().len(), MAX_STATEMENT_TOKENS + 1);
        let too_long = "x ".repeat(MAX_STATEMENT_TOKENS + 1);
        let e = tokenize(&too_long).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "Syntax error at line 1, column {}: statement is too long: more than {MAX_STATEMENT_TOKENS} tokens",
                2 * MAX_STATEMENT_TOKENS + 1
            )
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        let sql = "ab\r\nçé x\n";
        assert_eq!(line_column(sql, 0), (1, 1));
        assert_eq!(line_column(sql, 4), (2, 1));
        assert_eq!(line_column(sql, 9), (2, 4));
        assert_eq!(line_column(sql, sql.len()), (3, 1));
        assert_eq!(line_column(sql, 1000), (3, 1));
        // Inside 'ç': clamped to its start.
        assert_eq!(line_column(sql, 5), (2, 1));
    }

    #[test]
    fn describe_tokens() {
        let sql = "( abc 'a long string literal that goes on and on and on'";
        let t = tokenize(sql).unwrap();
        assert_eq!(t[0].describe(sql), "'('");
        assert_eq!(t[1].describe(sql), "abc");
        assert_eq!(
            t[2].describe(sql),
            "'a long string literal that goes on and …"
        );
        assert_eq!(t[3].describe(sql), "end of input");
    }
}
