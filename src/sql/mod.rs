//! SQL: lexer, parser, AST, values and the executor.

pub mod ast;
pub mod exec;
pub mod lexer;
pub mod parser;
pub mod value;
