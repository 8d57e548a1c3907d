//! Validation and deterministic generation of Chinese regulatory identifiers.
//!
//! Four identifier kinds are covered ([`IdKind`]):
//!
//! * **Unified social credit code** (统一社会信用代码, GB 32100-2015): 18 characters
//!   from the alphabet [`CREDIT_CODE_ALPHABET`] (digits and uppercase letters without
//!   I, O, S, V, Z). Position 1 is the registering department, position 2 the entity
//!   type, positions 3–8 the region code (6 digits, GB/T 2260), positions 9–17 the
//!   organisation code and position 18 a mod-31 check character.
//! * **Drug business licence number** (药品经营许可证编号): the current (2024) form
//!   and an accepted legacy form, see [`parse_licence_number`].
//! * **Drug approval number** (国药准字), see [`parse_approval_number`].
//! * **Drug traceability code** (药品追溯码): a 20-digit code or a GS1 element string,
//!   see [`parse_trace_code`].
//!
//! Invariants shared by every function in this module:
//!
//! * Input is never normalised. Surrounding whitespace is rejected
//!   ([`IdError::Format`]) and lowercase letters are rejected with a reason saying so
//!   ([`IdError::Character`]); callers that want lenient input must trim/uppercase
//!   explicitly before validating.
//! * Lengths and positions are counted in Unicode scalar values (`char`s), not bytes;
//!   positions reported in errors are 1-based.
//! * Nothing here panics. Generators (`make_*`) are deterministic pure functions of
//!   their arguments and return `Result`, failing with [`IdError`] when an argument is
//!   out of range instead of truncating or wrapping; every string they return passes
//!   the matching validator.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The 31-character alphabet of the unified social credit code, in check-value order
/// (the value of a character is its index in this string).
pub const CREDIT_CODE_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The 31 mainland province-level abbreviations accepted as the first character of a
/// drug business licence number.
pub const PROVINCE_ABBREVIATIONS: [char; 31] = [
    '京', '津', '冀', '晋', '蒙', '辽', '吉', '黑', '沪', '苏', '浙', '皖', '闽', '赣', '鲁', '豫',
    '鄂', '湘', '粤', '桂', '琼', '渝', '川', '贵', '云', '藏', '陕', '甘', '青', '宁', '新',
];

/// Prefix of every drug approval number.
pub const APPROVAL_PREFIX: &str = "国药准字";

/// Exclusive upper bound of `org_seq` in [`make_credit_code`]: 31⁹.
pub const CREDIT_ORG_SEQ_LIMIT: u64 = 31u64.pow(9);

const CREDIT_ALPHABET_BYTES: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights of positions 1–17 (3ⁱ mod 31).
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const CREDIT_LEN: usize = 18;
/// Multiplier used to spread consecutive organisation sequence numbers. It is odd and
/// coprime to 31, hence a unit modulo 31⁹, so `seq ↦ seq·M + C (mod 31⁹)` is a bijection.
const ORG_MULTIPLIER: u64 = 2_654_435_761;
const ORG_OFFSET: u64 = 1_234_567_890_123;
const _: () = assert!(!ORG_MULTIPLIER.is_multiple_of(2) && !ORG_MULTIPLIER.is_multiple_of(31));
const _: () = assert!(ORG_OFFSET < CREDIT_ORG_SEQ_LIMIT);

const LICENCE_SEQ_LIMIT: u32 = 1_000_000_000;
const TRACE_PRODUCT_MAX: u32 = 9_999_999;
const TRACE_SERIAL_MAX: u64 = 9_999_999_999_999;
const GS1_TEXT_MAX: usize = 20;
const GS1_EXTRA_CHARS: &str = "!\"%&'*+-./:;<=>?_,";

/// The kind of identifier an [`IdError`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// Unified social credit code (统一社会信用代码).
    CreditCode,
    /// Drug business licence number (药品经营许可证编号).
    LicenceNumber,
    /// Drug approval number (国药准字).
    ApprovalNumber,
    /// Drug traceability code (药品追溯码).
    TraceCode,
}

impl IdKind {
    /// Machine name in snake_case, e.g. `credit_code` (same as `Display`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::CreditCode => "credit_code",
            IdKind::LicenceNumber => "licence_number",
            IdKind::ApprovalNumber => "approval_number",
            IdKind::TraceCode => "trace_code",
        }
    }

    /// Human-readable name used in error messages, e.g. `credit code`.
    pub fn label(self) -> &'static str {
        match self {
            IdKind::CreditCode => "credit code",
            IdKind::LicenceNumber => "licence number",
            IdKind::ApprovalNumber => "approval number",
            IdKind::TraceCode => "trace code",
        }
    }

    /// What the check character is called for this kind, used in error messages.
    fn check_label(self) -> &'static str {
        match self {
            IdKind::TraceCode => "GTIN check digit",
            _ => "check character",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an identifier was rejected (or why a generator could not build one).
///
/// Every variant names the identifier kind and the offending value; `Display` renders
/// a complete English sentence suitable for a data operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value has the wrong number of characters.
    #[error("{} {value:?}: has {found} characters; expected {expected}", .kind.label())]
    Length {
        /// Identifier kind.
        kind: IdKind,
        /// The rejected value, verbatim.
        value: String,
        /// Description of the accepted length(s), e.g. `"18 characters"`.
        expected: &'static str,
        /// Number of characters (`char`s) found.
        found: usize,
    },
    /// A character is not allowed at its position.
    #[error(
        "{} {value:?}: character {found:?} at position {position} is not allowed: {reason}",
        .kind.label()
    )]
    Character {
        /// Identifier kind.
        kind: IdKind,
        /// The rejected value, verbatim.
        value: String,
        /// 1-based character position of the offending character.
        position: usize,
        /// The offending character.
        found: char,
        /// Why the character is not allowed there.
        reason: &'static str,
    },
    /// The check character (credit code) or GTIN check digit (trace code) is wrong.
    #[error("{} {value:?}: {} is {found:?}, expected {expected:?}", .kind.label(), .kind.check_label())]
    CheckCharacter {
        /// Identifier kind.
        kind: IdKind,
        /// The rejected value, verbatim.
        value: String,
        /// The check character computed from the other characters.
        expected: char,
        /// The check character present in the value.
        found: char,
    },
    /// The value does not have the required structure.
    #[error("{} {value:?}: {reason}", .kind.label())]
    Format {
        /// Identifier kind.
        kind: IdKind,
        /// The rejected value (or generator argument), verbatim.
        value: String,
        /// Human-readable explanation.
        reason: String,
    },
    /// A generator argument is outside the range the identifier can encode.
    #[error(
        "{}: {field} {value} is out of range; it must be between {min} and {max}",
        .kind.label()
    )]
    Range {
        /// Identifier kind being generated.
        kind: IdKind,
        /// Name of the offending argument, e.g. `"sequence number"`.
        field: &'static str,
        /// The offending argument.
        value: u64,
        /// Smallest accepted value (inclusive).
        min: u64,
        /// Largest accepted value (inclusive).
        max: u64,
    },
}

impl IdError {
    /// The identifier kind this error refers to.
    pub fn kind(&self) -> IdKind {
        match self {
            IdError::Length { kind, .. }
            | IdError::Character { kind, .. }
            | IdError::CheckCharacter { kind, .. }
            | IdError::Format { kind, .. }
            | IdError::Range { kind, .. } => *kind,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

fn reject_surrounding_whitespace(kind: IdKind, s: &str) -> Result<(), IdError> {
    if s.trim() != s {
        return Err(IdError::Format {
            kind,
            value: s.to_owned(),
            reason: "has leading or trailing whitespace; remove it before validating".to_owned(),
        });
    }
    Ok(())
}

fn char_error(
    kind: IdKind,
    value: &str,
    position: usize,
    found: char,
    reason: &'static str,
) -> IdError {
    IdError::Character {
        kind,
        value: value.to_owned(),
        position,
        found,
        reason,
    }
}

fn format_error(kind: IdKind, value: &str, reason: impl Into<String>) -> IdError {
    IdError::Format {
        kind,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn range_error(kind: IdKind, field: &'static str, value: u64, min: u64, max: u64) -> IdError {
    IdError::Range {
        kind,
        field,
        value,
        min,
        max,
    }
}

// ---------------------------------------------------------------------------------------
// Unified social credit code
// ---------------------------------------------------------------------------------------

const REGION_REASON: &str = "positions 3 to 8 hold the region code (GB/T 2260) and must be digits";

fn credit_value(c: char) -> Option<u32> {
    if !c.is_ascii() {
        return None;
    }
    CREDIT_ALPHABET_BYTES
        .iter()
        .position(|&b| char::from(b) == c)
        .and_then(|i| u32::try_from(i).ok())
}

fn credit_char(v: u32) -> char {
    // `v % 31` is always a valid index.
    char::from(CREDIT_ALPHABET_BYTES[(v % 31) as usize])
}

fn credit_char_reason(c: char) -> &'static str {
    if c.is_ascii_lowercase() {
        "lowercase letters are not accepted; credit codes are written in uppercase"
    } else if matches!(c, 'I' | 'O' | 'S' | 'V' | 'Z') {
        "the letters I, O, S, V and Z are never used in credit codes"
    } else if c.is_whitespace() {
        "whitespace is not allowed inside a credit code"
    } else if !c.is_ascii() {
        "only ASCII digits and uppercase letters are allowed (no full-width or other non-ASCII characters)"
    } else {
        "only digits 0-9 and uppercase letters other than I, O, S, V, Z are allowed"
    }
}

/// Checks every character of (a prefix of) a credit code and returns the check values.
fn credit_values(value: &str, chars: &[char]) -> Result<Vec<u32>, IdError> {
    let kind = IdKind::CreditCode;
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let position = i + 1;
            let v = credit_value(c)
                .ok_or_else(|| char_error(kind, value, position, c, credit_char_reason(c)))?;
            if (3..=8).contains(&position) && !c.is_ascii_digit() {
                return Err(char_error(kind, value, position, c, REGION_REASON));
            }
            Ok(v)
        })
        .collect()
}

fn credit_check_from_values(values: &[u32]) -> char {
    let sum: u32 = values.iter().zip(CREDIT_WEIGHTS).map(|(v, w)| v * w).sum();
    credit_char((31 - sum % 31) % 31)
}

/// Validates a unified social credit code (GB 32100-2015).
///
/// Checks, in order: no surrounding whitespace ([`IdError::Format`]); exactly 18
/// characters ([`IdError::Length`]); every character in [`CREDIT_CODE_ALPHABET`] and
/// positions 3–8 digits ([`IdError::Character`], lowercase is reported as such); the
/// check character ([`IdError::CheckCharacter`]).
///
/// Any single-character substitution of a valid code is detected, because every weight
/// is a nonzero residue modulo the prime 31.
pub fn validate_credit_code(s: &str) -> Result<(), IdError> {
    let kind = IdKind::CreditCode;
    reject_surrounding_whitespace(kind, s)?;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() != CREDIT_LEN {
        return Err(IdError::Length {
            kind,
            value: s.to_owned(),
            expected: "18 characters",
            found: chars.len(),
        });
    }
    let values = credit_values(s, &chars)?;
    let expected = credit_check_from_values(&values[..CREDIT_LEN - 1]);
    let found = chars[CREDIT_LEN - 1];
    if found != expected {
        return Err(IdError::CheckCharacter {
            kind,
            value: s.to_owned(),
            expected,
            found,
        });
    }
    Ok(())
}

/// Computes the check character (position 18) for the first 17 characters of a credit
/// code.
///
/// `first17` is validated with the same character rules as [`validate_credit_code`]
/// and must be exactly 17 characters long.
pub fn credit_check_char(first17: &str) -> Result<char, IdError> {
    let kind = IdKind::CreditCode;
    reject_surrounding_whitespace(kind, first17)?;
    let chars: Vec<char> = first17.chars().collect();
    if chars.len() != CREDIT_LEN - 1 {
        return Err(IdError::Length {
            kind,
            value: first17.to_owned(),
            expected: "17 characters (a credit code without its check character)",
            found: chars.len(),
        });
    }
    let values = credit_values(first17, &chars)?;
    Ok(credit_check_from_values(&values))
}

/// Returns the 6-digit region code (positions 3–8) of a credit code, or `None` if the
/// code does not pass [`validate_credit_code`].
pub fn credit_code_region(s: &str) -> Option<&str> {
    validate_credit_code(s).ok()?;
    // A valid code is 18 ASCII characters, so byte offsets equal character offsets.
    s.get(2..8)
}

/// Maps an organisation sequence number to the 9-character organisation code part.
///
/// The sequence number is mixed as `seq·M + C (mod 31⁹)` with `M` odd and coprime to
/// 31 (a bijection on `0..31⁹`), then written as 9 base-31 digits (most significant
/// first) in [`CREDIT_CODE_ALPHABET`]. Caller guarantees `seq < 31⁹`.
fn credit_org_code(seq: u64) -> String {
    let limit = u128::from(CREDIT_ORG_SEQ_LIMIT);
    let mixed = (u128::from(seq) * u128::from(ORG_MULTIPLIER) + u128::from(ORG_OFFSET)) % limit;
    let mut rest = mixed;
    let mut digits = [b'0'; 9];
    for d in digits.iter_mut().rev() {
        // `rest % 31 < 31`, always a valid index.
        *d = CREDIT_ALPHABET_BYTES[(rest % 31) as usize];
        rest /= 31;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

/// Builds a valid credit code deterministically.
///
/// The code is `department`, `entity_type`, `region`, a 9-character organisation code
/// derived from `org_seq`, and the computed check character. The organisation code is
/// `org_seq` mixed with a fixed odd multiplier coprime to 31 and an offset modulo 31⁹,
/// written in base 31, so consecutive sequence numbers give visibly different codes.
/// The mapping is injective for `org_seq < 31⁹` ([`CREDIT_ORG_SEQ_LIMIT`]): different
/// sequence numbers (with the same other arguments) give different codes. The
/// organisation part is synthetic; it does not carry a GB 11714 check digit.
///
/// # Errors
///
/// [`IdError::Character`] if `department` or `entity_type` is not in
/// [`CREDIT_CODE_ALPHABET`]; [`IdError::Format`] if `region` is not exactly 6 ASCII
/// digits; [`IdError::Range`] if `org_seq >= 31⁹`.
pub fn make_credit_code(
    department: char,
    entity_type: char,
    region: &str,
    org_seq: u64,
) -> Result<String, IdError> {
    let kind = IdKind::CreditCode;
    for (position, c) in [(1, department), (2, entity_type)] {
        if credit_value(c).is_none() {
            return Err(char_error(
                kind,
                &c.to_string(),
                position,
                c,
                credit_char_reason(c),
            ));
        }
    }
    if region.len() != 6 || !region.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format_error(
            kind,
            region,
            "the region code must be exactly 6 ASCII digits (GB/T 2260)",
        ));
    }
    if org_seq >= CREDIT_ORG_SEQ_LIMIT {
        return Err(range_error(
            kind,
            "organisation sequence number",
            org_seq,
            0,
            CREDIT_ORG_SEQ_LIMIT - 1,
        ));
    }
    let mut code = String::with_capacity(CREDIT_LEN);
    code.push(department);
    code.push(entity_type);
    code.push_str(region);
    code.push_str(&credit_org_code(org_seq));
    let check = credit_check_char(&code)?;
    code.push(check);
    Ok(code)
}

// ---------------------------------------------------------------------------------------
// Drug business licence number
// ---------------------------------------------------------------------------------------

/// Business type encoded by the second character of a current-form licence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceBusiness {
    /// `A`: wholesale (批发).
    Wholesale,
    /// `B`: retail chain headquarters (零售连锁总部).
    ChainHeadquarters,
    /// `C`: retail chain store (零售连锁门店).
    ChainStore,
    /// `D`: single retail pharmacy (单体药店).
    SinglePharmacy,
}

impl LicenceBusiness {
    /// All business types, in letter order.
    pub const ALL: [LicenceBusiness; 4] = [
        LicenceBusiness::Wholesale,
        LicenceBusiness::ChainHeadquarters,
        LicenceBusiness::ChainStore,
        LicenceBusiness::SinglePharmacy,
    ];

    /// The letter encoding this business type (`A`–`D`).
    pub fn letter(self) -> char {
        match self {
            LicenceBusiness::Wholesale => 'A',
            LicenceBusiness::ChainHeadquarters => 'B',
            LicenceBusiness::ChainStore => 'C',
            LicenceBusiness::SinglePharmacy => 'D',
        }
    }

    /// The business type encoded by `letter`, if any.
    pub fn from_letter(letter: char) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.letter() == letter)
    }
}

/// Which form a valid licence number has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceForm {
    /// Current (2024) form: province, business letter, legal-person letter, 9 digits.
    Current {
        /// Business type (second character).
        business: LicenceBusiness,
        /// `true` for `A` (legal person), `false` for `B` (not a legal person).
        legal_person: bool,
    },
    /// Accepted legacy form: province abbreviation, two ASCII uppercase letters,
    /// 7–10 digits.
    Legacy,
}

fn letter_reason(c: char) -> &'static str {
    if c.is_ascii_lowercase() {
        "lowercase letters are not accepted; use uppercase"
    } else {
        "positions 2 and 3 must be ASCII uppercase letters"
    }
}

/// Parses a drug business licence number (药品经营许可证编号) and reports its form.
///
/// Accepted forms:
///
/// * **Current** (since 2024), 12 characters: one of the 31 mainland province-level
///   abbreviations ([`PROVINCE_ABBREVIATIONS`]), a business letter `A` (wholesale) /
///   `B` (chain headquarters) / `C` (chain store) / `D` (single pharmacy), a letter
///   `A` (legal person) / `B` (not a legal person), then 9 digits, e.g. `蒙AA471012345`.
/// * **Legacy** (accepted legacy form), 10–13 characters: province abbreviation, two
///   ASCII uppercase letters, 7–10 digits, e.g. `粤AA7550001`.
///
/// A value matching the current form is classified as [`LicenceForm::Current`]; any
/// other value matching the legacy shape is [`LicenceForm::Legacy`] (so a 9-digit
/// value with letters outside the current ranges, e.g. `沪EA123456789`, is legacy).
pub fn parse_licence_number(s: &str) -> Result<LicenceForm, IdError> {
    let kind = IdKind::LicenceNumber;
    reject_surrounding_whitespace(kind, s)?;
    let chars: Vec<char> = s.chars().collect();
    if !(10..=13).contains(&chars.len()) {
        return Err(IdError::Length {
            kind,
            value: s.to_owned(),
            expected: "12 characters (current form) or 10 to 13 characters (legacy form)",
            found: chars.len(),
        });
    }
    let province = chars[0];
    if !PROVINCE_ABBREVIATIONS.contains(&province) {
        return Err(char_error(
            kind,
            s,
            1,
            province,
            "the first character must be a mainland province-level abbreviation such as 京 or 粤",
        ));
    }
    for (i, &c) in chars.iter().enumerate().take(3).skip(1) {
        if !c.is_ascii_uppercase() {
            return Err(char_error(kind, s, i + 1, c, letter_reason(c)));
        }
    }
    for (i, &c) in chars.iter().enumerate().skip(3) {
        if !c.is_ascii_digit() {
            return Err(char_error(
                kind,
                s,
                i + 1,
                c,
                "everything after the two letters must be ASCII digits",
            ));
        }
    }
    let legal_person = match chars[2] {
        'A' => Some(true),
        'B' => Some(false),
        _ => None,
    };
    match (
        chars.len(),
        LicenceBusiness::from_letter(chars[1]),
        legal_person,
    ) {
        (12, Some(business), Some(legal_person)) => Ok(LicenceForm::Current {
            business,
            legal_person,
        }),
        _ => Ok(LicenceForm::Legacy),
    }
}

/// Builds a current-form licence number: `province`, business letter, `A`/`B` for
/// `legal_person`, and `seq` zero-padded to 9 digits.
///
/// # Errors
///
/// [`IdError::Character`] if `province` is not in [`PROVINCE_ABBREVIATIONS`];
/// [`IdError::Range`] if `seq >= 10⁹`.
pub fn make_licence_number(
    province: char,
    business: LicenceBusiness,
    legal_person: bool,
    seq: u32,
) -> Result<String, IdError> {
    let kind = IdKind::LicenceNumber;
    if !PROVINCE_ABBREVIATIONS.contains(&province) {
        return Err(char_error(
            kind,
            &province.to_string(),
            1,
            province,
            "the province must be a mainland province-level abbreviation such as 京 or 粤",
        ));
    }
    if seq >= LICENCE_SEQ_LIMIT {
        return Err(range_error(
            kind,
            "sequence number",
            u64::from(seq),
            0,
            u64::from(LICENCE_SEQ_LIMIT - 1),
        ));
    }
    let legal = if legal_person { 'A' } else { 'B' };
    Ok(format!("{province}{}{legal}{seq:09}", business.letter()))
}

// ---------------------------------------------------------------------------------------
// Drug approval number
// ---------------------------------------------------------------------------------------

/// Product class encoded by the letter after `国药准字`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalClass {
    /// `H`: chemical drug.
    Chemical,
    /// `Z`: traditional Chinese medicine.
    TraditionalChinese,
    /// `S`: biological product.
    Biological,
}

impl ApprovalClass {
    /// All classes.
    pub const ALL: [ApprovalClass; 3] = [
        ApprovalClass::Chemical,
        ApprovalClass::TraditionalChinese,
        ApprovalClass::Biological,
    ];

    /// The letter encoding this class (`H`, `Z` or `S`).
    pub fn letter(self) -> char {
        match self {
            ApprovalClass::Chemical => 'H',
            ApprovalClass::TraditionalChinese => 'Z',
            ApprovalClass::Biological => 'S',
        }
    }

    /// The class encoded by `letter`, if any.
    pub fn from_letter(letter: char) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.letter() == letter)
    }
}

/// Parses a drug approval number and returns its product class.
///
/// Accepted form: `国药准字`, a class letter `H` (chemical) / `Z` (traditional Chinese
/// medicine) / `S` (biological), an optional second letter `C` or `J`, then exactly 8
/// digits, e.g. `国药准字H20230001`, `国药准字HJ20150001`. The digits are
/// conventionally a year and a sequence number but are not otherwise checked.
pub fn parse_approval_number(s: &str) -> Result<ApprovalClass, IdError> {
    let kind = IdKind::ApprovalNumber;
    reject_surrounding_whitespace(kind, s)?;
    let Some(rest) = s.strip_prefix(APPROVAL_PREFIX) else {
        return Err(format_error(
            kind,
            s,
            format!("must begin with {APPROVAL_PREFIX}"),
        ));
    };
    let offset = APPROVAL_PREFIX.chars().count();
    let chars: Vec<char> = rest.chars().collect();
    let Some(&class_letter) = chars.first() else {
        return Err(format_error(
            kind,
            s,
            "the class letter (H, Z or S) and 8 digits are missing",
        ));
    };
    let class = ApprovalClass::from_letter(class_letter).ok_or_else(|| {
        let reason = if class_letter.is_ascii_lowercase() {
            "lowercase letters are not accepted; the class letter must be uppercase H, Z or S"
        } else {
            "the class letter must be H (chemical), Z (traditional Chinese medicine) or S (biological)"
        };
        char_error(kind, s, offset + 1, class_letter, reason)
    })?;
    let mut digits_start = 1;
    if let Some(&second) = chars.get(1)
        && second.is_ascii_alphabetic()
    {
        if second != 'C' && second != 'J' {
            let reason = if second.is_ascii_lowercase() {
                "lowercase letters are not accepted; the optional second letter must be C or J"
            } else {
                "the optional second letter must be C or J"
            };
            return Err(char_error(kind, s, offset + 2, second, reason));
        }
        digits_start = 2;
    }
    let digits = &chars[digits_start..];
    if let Some((i, &c)) = digits.iter().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(char_error(
            kind,
            s,
            offset + digits_start + i + 1,
            c,
            "the class letters must be followed by ASCII digits only",
        ));
    }
    if digits.len() != 8 {
        return Err(format_error(
            kind,
            s,
            format!(
                "expected 8 digits after the class letters, found {}",
                digits.len()
            ),
        ));
    }
    Ok(class)
}

/// Builds an approval number `国药准字` + class letter + 4-digit `year` + `seq`
/// zero-padded to 4 digits.
///
/// # Errors
///
/// [`IdError::Range`] if `year` is not in 1000–9999 or `seq > 9999`.
pub fn make_approval_number(class: ApprovalClass, year: u16, seq: u32) -> Result<String, IdError> {
    let kind = IdKind::ApprovalNumber;
    if !(1000..=9999).contains(&year) {
        return Err(range_error(kind, "year", u64::from(year), 1000, 9999));
    }
    if seq > 9999 {
        return Err(range_error(
            kind,
            "sequence number",
            u64::from(seq),
            0,
            9999,
        ));
    }
    Ok(format!(
        "{APPROVAL_PREFIX}{}{year:04}{seq:04}",
        class.letter()
    ))
}

// ---------------------------------------------------------------------------------------
// Traceability code
// ---------------------------------------------------------------------------------------

/// Which form a valid traceability code has.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceCodeForm {
    /// Exactly 20 ASCII digits (form only; no checksum is verified).
    Digits20,
    /// GS1 element string `(01)…(21)…(17)…(10)…`.
    Gs1 {
        /// GTIN-14 from AI (01), check digit verified.
        gtin: String,
        /// Serial number from AI (21).
        serial: String,
        /// Expiry date `YYMMDD` from AI (17), as written (day `00` allowed).
        expiry: String,
        /// Batch/lot number from AI (10).
        batch: String,
    },
}

/// Computes the GS1 mod-10 check digit for the first 13 digits of a GTIN-14.
///
/// Weights 3, 1, 3, 1, … are applied from the rightmost of the 13 digits. Returns
/// `None` unless `digits13` is exactly 13 ASCII digits.
pub fn gs1_check_digit(digits13: &str) -> Option<char> {
    if digits13.len() != 13 || !digits13.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = digits13
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i.is_multiple_of(2) { d * 3 } else { d }
        })
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10)
}

fn is_gs1_text_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || GS1_EXTRA_CHARS.contains(c)
}

/// Cursor over the characters of a GS1 element string, producing errors with the
/// original value and 1-based positions.
struct Gs1Reader<'a> {
    value: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl Gs1Reader<'_> {
    fn format(&self, reason: impl Into<String>) -> IdError {
        format_error(IdKind::TraceCode, self.value, reason)
    }

    fn expect_ai(&mut self, ai: &str, name: &str) -> Result<(), IdError> {
        let ai_chars: Vec<char> = ai.chars().collect();
        let end = self.pos + ai_chars.len();
        if self.chars.get(self.pos..end) != Some(ai_chars.as_slice()) {
            return Err(self.format(format!(
                "expected application identifier {ai} ({name}) at position {}; \
                 GS1 codes must contain (01), (21), (17), (10) in that order",
                self.pos + 1
            )));
        }
        self.pos = end;
        Ok(())
    }

    fn digits(
        &mut self,
        count: usize,
        what: &str,
        reason: &'static str,
    ) -> Result<String, IdError> {
        let mut out = String::with_capacity(count);
        for _ in 0..count {
            let Some(&c) = self.chars.get(self.pos) else {
                return Err(self.format(format!("{what} must be {count} digits")));
            };
            if !c.is_ascii_digit() {
                return Err(char_error(
                    IdKind::TraceCode,
                    self.value,
                    self.pos + 1,
                    c,
                    reason,
                ));
            }
            out.push(c);
            self.pos += 1;
        }
        Ok(out)
    }

    /// Reads a serial/batch field up to the next `(` (if `stop_at_paren`) or the end.
    fn text(&mut self, what: &str, stop_at_paren: bool) -> Result<String, IdError> {
        let mut out = String::new();
        while let Some(&c) = self.chars.get(self.pos) {
            if stop_at_paren && c == '(' {
                break;
            }
            if !is_gs1_text_char(c) {
                let reason = if c == '(' {
                    "no application identifiers are accepted after the batch (10)"
                } else {
                    "serial and batch may only contain ASCII letters, digits and !\"%&'*+-./:;<=>?_,"
                };
                return Err(char_error(
                    IdKind::TraceCode,
                    self.value,
                    self.pos + 1,
                    c,
                    reason,
                ));
            }
            out.push(c);
            self.pos += 1;
        }
        let n = out.chars().count();
        if !(1..=GS1_TEXT_MAX).contains(&n) {
            return Err(self.format(format!("{what} must be 1 to 20 characters, found {n}")));
        }
        Ok(out)
    }
}

/// Validates a GS1 `YYMMDD` date; day `00` means "end of month" and is accepted.
/// Years are interpreted as 2000–2099 (this only matters for 29 February).
fn valid_gs1_date(yymmdd: &str) -> bool {
    let num = |r: std::ops::Range<usize>| yymmdd.get(r).and_then(|p| p.parse::<u32>().ok());
    let (Some(yy), Some(mm), Some(dd)) = (num(0..2), num(2..4), num(4..6)) else {
        return false;
    };
    let Ok(year) = i32::try_from(2000 + yy) else {
        return false;
    };
    if dd == 0 {
        return (1..=12).contains(&mm);
    }
    NaiveDate::from_ymd_opt(year, mm, dd).is_some()
}

fn parse_gs1(s: &str) -> Result<TraceCodeForm, IdError> {
    let mut r = Gs1Reader {
        value: s,
        chars: s.chars().collect(),
        pos: 0,
    };
    r.expect_ai("(01)", "GTIN")?;
    let gtin = r.digits(14, "the GTIN (01)", "the GTIN (01) must be 14 ASCII digits")?;
    let (body, check) = gtin.split_at(13);
    let expected = gs1_check_digit(body).ok_or_else(|| r.format("the GTIN (01) is malformed"))?;
    let found = check.chars().next().unwrap_or('?');
    if found != expected {
        return Err(IdError::CheckCharacter {
            kind: IdKind::TraceCode,
            value: s.to_owned(),
            expected,
            found,
        });
    }
    r.expect_ai("(21)", "serial")?;
    let serial = r.text("the serial (21)", true)?;
    r.expect_ai("(17)", "expiry date")?;
    let expiry = r.digits(
        6,
        "the expiry date (17)",
        "the expiry date (17) must be 6 ASCII digits YYMMDD",
    )?;
    if !valid_gs1_date(&expiry) {
        return Err(r.format(format!(
            "the expiry date (17) {expiry} is not a valid YYMMDD calendar date"
        )));
    }
    r.expect_ai("(10)", "batch")?;
    let batch = r.text("the batch (10)", false)?;
    Ok(TraceCodeForm::Gs1 {
        gtin,
        serial,
        expiry,
        batch,
    })
}

/// Parses a drug traceability code (药品追溯码).
///
/// Accepted forms:
///
/// * exactly 20 ASCII digits ([`TraceCodeForm::Digits20`]; form only, no checksum);
/// * a GS1 element string with human-readable AIs in this fixed order:
///   `(01)` + 14-digit GTIN (check digit verified, see [`gs1_check_digit`]) +
///   `(21)` + serial + `(17)` + expiry `YYMMDD` + `(10)` + batch. Serial and batch
///   are 1–20 characters of `[A-Za-z0-9]` plus `!"%&'*+-./:;<=>?_,` (a simplification
///   of the GS1 AI-82 set without parentheses). The expiry must be a real calendar
///   date, years read as 20YY; day `00` (end of month) is allowed.
///
/// Any value starting with `(` is parsed as GS1; anything else as the 20-digit form.
pub fn parse_trace_code(s: &str) -> Result<TraceCodeForm, IdError> {
    let kind = IdKind::TraceCode;
    reject_surrounding_whitespace(kind, s)?;
    if s.starts_with('(') {
        return parse_gs1(s);
    }
    if let Some((i, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(char_error(
            kind,
            s,
            i + 1,
            c,
            "a 20-digit trace code may only contain ASCII digits (GS1 codes must start with (01))",
        ));
    }
    let found = s.len();
    if found != 20 {
        return Err(IdError::Length {
            kind,
            value: s.to_owned(),
            expected: "20 digits",
            found,
        });
    }
    Ok(TraceCodeForm::Digits20)
}

/// Builds a 20-digit traceability code: `product_seq` zero-padded to 7 digits followed
/// by `serial` zero-padded to 13 digits. Distinct arguments give distinct codes.
///
/// # Errors
///
/// [`IdError::Range`] if `product_seq > 9_999_999` or `serial > 9_999_999_999_999`.
pub fn make_trace_code(product_seq: u32, serial: u64) -> Result<String, IdError> {
    let kind = IdKind::TraceCode;
    if product_seq > TRACE_PRODUCT_MAX {
        return Err(range_error(
            kind,
            "product sequence number",
            u64::from(product_seq),
            0,
            u64::from(TRACE_PRODUCT_MAX),
        ));
    }
    if serial > TRACE_SERIAL_MAX {
        return Err(range_error(
            kind,
            "serial number",
            serial,
            0,
            TRACE_SERIAL_MAX,
        ));
    }
    Ok(format!("{product_seq:07}{serial:013}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const VALID_CREDIT: &str = "91110000600037341L";

    fn credit_err(s: &str) -> IdError {
        validate_credit_code(s).expect_err(s)
    }

    fn assert_credit_char(s: &str, position: usize, found: char) -> &'static str {
        match credit_err(s) {
            IdError::Character {
                kind: IdKind::CreditCode,
                position: p,
                found: f,
                reason,
                ..
            } => {
                assert_eq!((p, f), (position, found), "{s}");
                reason
            }
            other => panic!("{s}: unexpected {other:?}"),
        }
    }

    fn assert_credit_length(s: &str, found: usize) {
        assert!(
            matches!(credit_err(s), IdError::Length { kind: IdKind::CreditCode, found: f, .. } if f == found),
            "{s}"
        );
    }

    fn assert_format(err: IdError, kind: IdKind) {
        assert!(
            matches!(&err, IdError::Format { kind: k, .. } if *k == kind),
            "{err:?}"
        );
    }

    // ----- credit code ------------------------------------------------------------

    #[test]
    fn weights_are_powers_of_three_mod_31() {
        let mut w = 1u32;
        for weight in CREDIT_WEIGHTS {
            assert_eq!(weight, w);
            w = w * 3 % 31;
        }
        assert_eq!(CREDIT_CODE_ALPHABET.as_bytes(), CREDIT_ALPHABET_BYTES);
    }

    #[test]
    fn domain_example_is_valid() {
        assert_eq!(validate_credit_code(VALID_CREDIT), Ok(()));
        assert_eq!(credit_check_char("91110000600037341"), Ok('L'));
        assert_eq!(credit_code_region(VALID_CREDIT), Some("110000"));
    }

    #[test]
    fn region_of_invalid_code_is_none() {
        assert_eq!(credit_code_region("91110000600037341X"), None);
        assert_eq!(credit_code_region(""), None);
    }

    #[test]
    fn wrong_check_character_message() {
        let err = credit_err("91110000600037341X");
        assert_eq!(
            err,
            IdError::CheckCharacter {
                kind: IdKind::CreditCode,
                value: "91110000600037341X".into(),
                expected: 'L',
                found: 'X'
            }
        );
        assert_eq!(
            err.to_string(),
            "credit code \"91110000600037341X\": check character is 'X', expected 'L'"
        );
        assert_eq!(err.kind(), IdKind::CreditCode);
    }

    #[test]
    fn invalid_credit_lengths() {
        assert_credit_length("", 0);
        assert_credit_length("91110000600037341", 17);
        assert_credit_length("91110000600037341L0", 19);
        assert_credit_length("9", 1);
        let msg = credit_err("").to_string();
        assert_eq!(
            msg,
            "credit code \"\": has 0 characters; expected 18 characters"
        );
    }

    #[test]
    fn invalid_credit_excluded_letters() {
        for (s, pos, c) in [
            ("I1110000600037341L", 1, 'I'),
            ("91110000O00037341L", 9, 'O'),
            ("911100006S0037341L", 10, 'S'),
            ("91110000600V37341L", 12, 'V'),
            ("91110000600037341Z", 18, 'Z'),
        ] {
            let reason = assert_credit_char(s, pos, c);
            assert!(reason.contains("I, O, S, V and Z"), "{reason}");
        }
    }

    #[test]
    fn invalid_credit_lowercase() {
        for (s, pos, c) in [
            ("91110000600037341l", 18, 'l'),
            ("91110000a00037341L", 9, 'a'),
            ("9a110000600037341L", 2, 'a'),
            ("91a10000600037341L", 3, 'a'),
        ] {
            let reason = assert_credit_char(s, pos, c);
            assert!(reason.contains("lowercase"), "{reason}");
        }
        let msg = credit_err("91110000600037341l").to_string();
        assert!(
            msg.contains("lowercase") && msg.contains("position 18"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_credit_letter_in_region() {
        for (s, pos, c) in [
            ("91A10000600037341L", 3, 'A'),
            ("9111000Y600037341L", 8, 'Y'),
        ] {
            assert_eq!(assert_credit_char(s, pos, c), REGION_REASON);
        }
    }

    #[test]
    fn invalid_credit_wrong_check_characters() {
        for found in ['0', 'X', 'A', 'K'] {
            let s = format!("91110000600037341{found}");
            assert_eq!(
                credit_err(&s),
                IdError::CheckCharacter {
                    kind: IdKind::CreditCode,
                    value: s.clone(),
                    expected: 'L',
                    found
                }
            );
        }
    }

    #[test]
    fn invalid_credit_whitespace() {
        for s in [
            " 91110000600037341L",
            "91110000600037341L\n",
            "\t91110000600037341L",
            "   ",
        ] {
            assert_format(credit_err(s), IdKind::CreditCode);
        }
        assert!(assert_credit_char("9111 000600037341L", 5, ' ').contains("whitespace"));
        assert!(assert_credit_char("91110000600\t37341L", 12, '\t').contains("whitespace"));
    }

    #[test]
    fn invalid_credit_non_ascii_and_punctuation() {
        assert!(assert_credit_char("９1110000600037341L", 1, '９').contains("non-ASCII"));
        assert!(assert_credit_char("91110000600037341中", 18, '中').contains("non-ASCII"));
        assert_credit_char("9111000060003734-L", 17, '-');
        assert!(
            assert_credit_char("911100\u{3000}0600037341L", 7, '\u{3000}').contains("whitespace")
        );
        // Full-width space at the end counts as surrounding whitespace.
        assert_format(credit_err("91110000600037341\u{3000}"), IdKind::CreditCode);
    }

    #[test]
    fn check_char_input_validation() {
        assert!(matches!(
            credit_check_char(VALID_CREDIT),
            Err(IdError::Length { found: 18, .. })
        ));
        assert!(matches!(
            credit_check_char("9111000060003734I"),
            Err(IdError::Character {
                position: 17,
                found: 'I',
                ..
            })
        ));
        assert!(matches!(
            credit_check_char(" 9111000060003734"),
            Err(IdError::Format { .. })
        ));
    }

    #[test]
    fn every_single_substitution_of_domain_example_is_detected() {
        let original: Vec<char> = VALID_CREDIT.chars().collect();
        for i in 0..CREDIT_LEN {
            for b in CREDIT_ALPHABET_BYTES {
                let c = char::from(*b);
                if c == original[i] {
                    continue;
                }
                let mut mutated = original.clone();
                mutated[i] = c;
                let s: String = mutated.into_iter().collect();
                assert!(validate_credit_code(&s).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn generated_credit_codes_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for seq in 0..10_000u64 {
            let code = make_credit_code('9', '1', "110000", seq).unwrap();
            assert_eq!(validate_credit_code(&code), Ok(()), "{code}");
            assert_eq!(credit_code_region(&code), Some("110000"));
            assert!(code.starts_with("91110000"));
            assert!(seen.insert(code));
        }
        // Consecutive sequence numbers differ in more than the last character.
        let a = make_credit_code('9', '1', "110000", 0).unwrap();
        let b = make_credit_code('9', '1', "110000", 1).unwrap();
        assert_ne!(a[8..16], b[8..16]);
    }

    #[test]
    fn credit_generator_is_deterministic_and_bounded() {
        assert_eq!(
            make_credit_code('Y', '1', "440300", 42),
            make_credit_code('Y', '1', "440300", 42)
        );
        let last = make_credit_code('1', '2', "310000", CREDIT_ORG_SEQ_LIMIT - 1).unwrap();
        assert_eq!(validate_credit_code(&last), Ok(()));
        assert!(matches!(
            make_credit_code('9', '1', "110000", CREDIT_ORG_SEQ_LIMIT),
            Err(IdError::Range {
                kind: IdKind::CreditCode,
                ..
            })
        ));
        assert!(matches!(
            make_credit_code('I', '1', "110000", 0),
            Err(IdError::Character {
                position: 1,
                found: 'I',
                ..
            })
        ));
        assert!(matches!(
            make_credit_code('9', 'z', "110000", 0),
            Err(IdError::Character {
                position: 2,
                found: 'z',
                ..
            })
        ));
        for region in ["11000", "1100000", "11000A", "１10000"] {
            assert!(
                matches!(
                    make_credit_code('9', '1', region, 0),
                    Err(IdError::Format { .. })
                ),
                "{region}"
            );
        }
    }

    #[test]
    fn id_kind_display_is_snake_case() {
        assert_eq!(IdKind::CreditCode.to_string(), "credit_code");
        assert_eq!(IdKind::LicenceNumber.to_string(), "licence_number");
        assert_eq!(IdKind::ApprovalNumber.to_string(), "approval_number");
        assert_eq!(IdKind::TraceCode.to_string(), "trace_code");
    }

    // ----- licence number ---------------------------------------------------------

    #[test]
    fn licence_current_and_legacy_valid() {
        assert_eq!(
            parse_licence_number("蒙AA471012345"),
            Ok(LicenceForm::Current {
                business: LicenceBusiness::Wholesale,
                legal_person: true
            })
        );
        assert_eq!(
            parse_licence_number("京DB123456789"),
            Ok(LicenceForm::Current {
                business: LicenceBusiness::SinglePharmacy,
                legal_person: false
            })
        );
        assert_eq!(
            parse_licence_number("粤CA000000001"),
            Ok(LicenceForm::Current {
                business: LicenceBusiness::ChainStore,
                legal_person: true
            })
        );
        for legacy in [
            "粤AA7550001",
            "苏AB12345678",
            "京AA1234567890",
            "沪EA123456789",
            "新CC123456789",
        ] {
            assert_eq!(
                parse_licence_number(legacy),
                Ok(LicenceForm::Legacy),
                "{legacy}"
            );
        }
    }

    #[test]
    fn licence_generator_round_trips() {
        for province in PROVINCE_ABBREVIATIONS {
            for business in LicenceBusiness::ALL {
                for legal_person in [true, false] {
                    let s =
                        make_licence_number(province, business, legal_person, 471_012_345).unwrap();
                    assert_eq!(
                        parse_licence_number(&s),
                        Ok(LicenceForm::Current {
                            business,
                            legal_person
                        })
                    );
                }
            }
        }
        assert_eq!(
            make_licence_number('蒙', LicenceBusiness::Wholesale, true, 471_012_345).unwrap(),
            "蒙AA471012345"
        );
        assert_eq!(
            make_licence_number('京', LicenceBusiness::ChainHeadquarters, false, 7).unwrap(),
            "京BB000000007"
        );
        assert!(matches!(
            make_licence_number('港', LicenceBusiness::Wholesale, true, 1),
            Err(IdError::Character { found: '港', .. })
        ));
        assert!(matches!(
            make_licence_number('京', LicenceBusiness::Wholesale, true, 1_000_000_000),
            Err(IdError::Range {
                kind: IdKind::LicenceNumber,
                ..
            })
        ));
    }

    #[test]
    fn licence_invalid() {
        let err = |s: &str| parse_licence_number(s).expect_err(s);
        let is_char = |s: &str, position: usize, found: char| {
            assert!(
                matches!(
                    err(s),
                    IdError::Character { kind: IdKind::LicenceNumber, position: p, found: f, .. }
                    if p == position && f == found
                ),
                "{s}: {:?}",
                err(s)
            );
        };
        for s in ["", "蒙AA47101", "蒙AA4710123456789"] {
            assert!(
                matches!(
                    err(s),
                    IdError::Length {
                        kind: IdKind::LicenceNumber,
                        ..
                    }
                ),
                "{s}"
            );
        }
        is_char("XAA471012345", 1, 'X');
        is_char("港AA471012345", 1, '港');
        is_char("蒙aA471012345", 2, 'a');
        is_char("蒙A1471012345", 3, '1');
        is_char("蒙AA47101234X", 12, 'X');
        is_char("蒙AA４71012345", 4, '４');
        is_char("蒙ÀA471012345", 2, 'À');
        is_char("蒙蒙A471012345", 2, '蒙');
        is_char("蒙AA4710 12345", 8, ' ');
        assert_format(err(" 蒙AA471012345"), IdKind::LicenceNumber);
        assert_format(err("蒙AA471012345 "), IdKind::LicenceNumber);
        assert!(err("蒙aA471012345").to_string().contains("lowercase"));
    }

    // ----- approval number --------------------------------------------------------

    #[test]
    fn approval_valid() {
        for (s, class) in [
            ("国药准字H20230001", ApprovalClass::Chemical),
            ("国药准字Z20043012", ApprovalClass::TraditionalChinese),
            ("国药准字S10980089", ApprovalClass::Biological),
            ("国药准字HJ20150001", ApprovalClass::Chemical),
            ("国药准字SC20100001", ApprovalClass::Biological),
            ("国药准字ZC20110002", ApprovalClass::TraditionalChinese),
            ("国药准字HC20200003", ApprovalClass::Chemical),
            ("国药准字SJ20180004", ApprovalClass::Biological),
        ] {
            assert_eq!(parse_approval_number(s), Ok(class), "{s}");
        }
    }

    #[test]
    fn approval_generator_round_trips() {
        for class in ApprovalClass::ALL {
            let s = make_approval_number(class, 2023, 1).unwrap();
            assert_eq!(parse_approval_number(&s), Ok(class));
        }
        assert_eq!(
            make_approval_number(ApprovalClass::Chemical, 2023, 1).unwrap(),
            "国药准字H20230001"
        );
        assert!(matches!(
            make_approval_number(ApprovalClass::Chemical, 999, 1),
            Err(IdError::Range { field: "year", .. })
        ));
        assert!(matches!(
            make_approval_number(ApprovalClass::Chemical, 2023, 10_000),
            Err(IdError::Range {
                field: "sequence number",
                ..
            })
        ));
    }

    #[test]
    fn approval_invalid() {
        let err = |s: &str| parse_approval_number(s).expect_err(s);
        let is_char = |s: &str, position: usize, found: char| {
            assert!(
                matches!(
                    err(s),
                    IdError::Character { kind: IdKind::ApprovalNumber, position: p, found: f, .. }
                    if p == position && f == found
                ),
                "{s}: {:?}",
                err(s)
            );
        };
        for s in [
            "",
            "H20230001",
            "国药准字",
            "国药准字H2023001",
            "国药准字H202300011",
            " 国药准字H20230001",
            "国药准字H20230001\n",
            "国药准H20230001",
        ] {
            assert_format(err(s), IdKind::ApprovalNumber);
        }
        is_char("国药准字X20230001", 5, 'X');
        is_char("国药准字h20230001", 5, 'h');
        is_char("国药准字J20230001", 5, 'J');
        is_char("国药准字HX20230001", 6, 'X');
        is_char("国药准字Hj20230001", 6, 'j');
        is_char("国药准字H2023000A", 13, 'A');
        is_char("国药准字 H20230001", 5, ' ');
        is_char("国药准字HJC20230001", 7, 'C');
        assert!(err("国药准字h20230001").to_string().contains("lowercase"));
        assert_eq!(
            err("国药准字H2023001").to_string(),
            "approval number \"国药准字H2023001\": expected 8 digits after the class letters, found 7"
        );
    }

    // ----- trace code -------------------------------------------------------------

    const GS1_VALID: &str = "(01)04006381333931(21)ABC123(17)251231(10)LOT-7";

    #[test]
    fn gs1_check_digit_known_values() {
        assert_eq!(gs1_check_digit("0400638133393"), Some('1'));
        assert_eq!(gs1_check_digit("0001234560001"), Some('2'));
        assert_eq!(gs1_check_digit("0000000000000"), Some('0'));
        assert_eq!(gs1_check_digit("000123456000"), None);
        assert_eq!(gs1_check_digit("000123456000A"), None);
        assert_eq!(gs1_check_digit("００01234560001"), None);
    }

    #[test]
    fn trace_digits_valid() {
        assert_eq!(
            parse_trace_code("12345678901234567890"),
            Ok(TraceCodeForm::Digits20)
        );
        let code = make_trace_code(1_234_567, 42).unwrap();
        assert_eq!(code, "12345670000000000042");
        assert_eq!(parse_trace_code(&code), Ok(TraceCodeForm::Digits20));
        let max = make_trace_code(TRACE_PRODUCT_MAX, TRACE_SERIAL_MAX).unwrap();
        assert_eq!(parse_trace_code(&max), Ok(TraceCodeForm::Digits20));
        assert!(matches!(
            make_trace_code(TRACE_PRODUCT_MAX + 1, 0),
            Err(IdError::Range {
                kind: IdKind::TraceCode,
                ..
            })
        ));
        assert!(matches!(
            make_trace_code(0, TRACE_SERIAL_MAX + 1),
            Err(IdError::Range {
                kind: IdKind::TraceCode,
                ..
            })
        ));
    }

    #[test]
    fn trace_digits_invalid() {
        let err = |s: &str| parse_trace_code(s).expect_err(s);
        for (s, n) in [
            ("1234567890123456789", 19),
            ("123456789012345678901", 21),
            ("", 0),
        ] {
            assert!(
                matches!(err(s), IdError::Length { kind: IdKind::TraceCode, found, .. } if found == n),
                "{s}"
            );
        }
        assert!(matches!(
            err("1234567890123456789A"),
            IdError::Character {
                position: 20,
                found: 'A',
                ..
            }
        ));
        assert!(matches!(
            err("ABCDEFGHIJKLMNOPQRST"),
            IdError::Character {
                position: 1,
                found: 'A',
                ..
            }
        ));
        assert!(matches!(
            err("1234567890１234567890"),
            IdError::Character { position: 11, .. }
        ));
        assert_format(err(" 12345678901234567890"), IdKind::TraceCode);
    }

    #[test]
    fn trace_gs1_valid() {
        assert_eq!(
            parse_trace_code(GS1_VALID),
            Ok(TraceCodeForm::Gs1 {
                gtin: "04006381333931".into(),
                serial: "ABC123".into(),
                expiry: "251231".into(),
                batch: "LOT-7".into(),
            })
        );
        for s in [
            "(01)00012345600012(21)x(17)250200(10)b",
            "(01)00012345600012(21)abcdefghij0123456789(17)240229(10)!\"%&'*+-./:;<=>?_,",
        ] {
            assert!(
                matches!(parse_trace_code(s), Ok(TraceCodeForm::Gs1 { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn trace_gs1_invalid() {
        let err = |s: &str| parse_trace_code(s).expect_err(s);
        let wrong = "(01)04006381333932(21)ABC123(17)251231(10)LOT-7";
        assert_eq!(
            err(wrong),
            IdError::CheckCharacter {
                kind: IdKind::TraceCode,
                value: wrong.into(),
                expected: '1',
                found: '2'
            }
        );
        assert!(
            err(wrong)
                .to_string()
                .contains("GTIN check digit is '2', expected '1'")
        );
        for s in [
            "(01)04006381333931(21)ABC123(17)251301(10)LOT-7", // month 13
            "(01)04006381333931(21)ABC123(17)250230(10)LOT-7", // 30 February
            "(01)04006381333931(21)ABC123(17)250229(10)LOT-7", // not a leap year
            "(01)04006381333931(21)ABC123(17)250000(10)LOT-7", // month 00
            "(01)04006381333931(17)251231(10)LOT-7",           // missing (21)
            "(01)04006381333931(21)ABC123(10)LOT-7",           // missing (17)
            "(01)04006381333931(21)ABC123(17)251231",          // missing (10)
            "(01)04006381333931(21)(17)251231(10)LOT-7",       // empty serial
            "(01)04006381333931(21)ABC123(17)251231(10)",      // empty batch
            "(01)04006381333931(21)ABCDEFGHIJ0123456789X(17)251231(10)L", // serial > 20
            "(01)0400638133393",                               // truncated GTIN
            "(02)04006381333931(21)ABC123(17)251231(10)LOT-7", // wrong first AI
        ] {
            assert!(
                matches!(
                    err(s),
                    IdError::Format {
                        kind: IdKind::TraceCode,
                        ..
                    }
                ),
                "{s}: {:?}",
                err(s)
            );
        }
        assert!(matches!(
            err("(01)04006381333931(21)AB#123(17)251231(10)LOT-7"),
            IdError::Character {
                position: 25,
                found: '#',
                ..
            }
        ));
        assert!(matches!(
            err("(01)04006381333931(21)ABC123(17)2512(10)LOT-7"),
            IdError::Character {
                position: 37,
                found: '(',
                ..
            }
        ));
        assert!(matches!(
            err("(01)0400638133393(21)ABC123(17)251231(10)LOT-7"),
            IdError::Character {
                position: 18,
                found: '(',
                ..
            }
        ));
        assert!(matches!(
            err("(01)04006381333931(21)ABC123(17)251231(10)LOT-7(11)250101"),
            IdError::Character { found: '(', .. }
        ));
        assert!(
            err("(01)04006381333931(21)ABC123(17)251301(10)LOT-7")
                .to_string()
                .contains("251301 is not a valid YYMMDD calendar date")
        );
    }

    // ----- properties -------------------------------------------------------------

    fn credit_char_strategy() -> impl Strategy<Value = char> {
        (0u32..31).prop_map(credit_char)
    }

    prop_compose! {
        fn generated_credit_code()(
            department in credit_char_strategy(),
            entity_type in credit_char_strategy(),
            region in 0u32..1_000_000,
            org_seq in 0..CREDIT_ORG_SEQ_LIMIT,
        ) -> String {
            make_credit_code(department, entity_type, &format!("{region:06}"), org_seq)
                .expect("generator arguments are in range")
        }
    }

    proptest! {
        #[test]
        fn prop_generated_credit_codes_validate(code in generated_credit_code()) {
            prop_assert_eq!(validate_credit_code(&code), Ok(()));
            prop_assert_eq!(code.len(), CREDIT_LEN);
        }

        #[test]
        fn prop_single_substitution_is_detected(
            code in generated_credit_code(),
            position in 0..CREDIT_LEN,
            shift in 1u32..31,
        ) {
            let mut chars: Vec<char> = code.chars().collect();
            let original = credit_value(chars[position]).expect("generated char in alphabet");
            let replacement = credit_char(original + shift);
            prop_assert_ne!(replacement, chars[position]);
            chars[position] = replacement;
            let mutated: String = chars.into_iter().collect();
            let err = validate_credit_code(&mutated).expect_err("substitution must be detected");
            if (2..8).contains(&position) && !replacement.is_ascii_digit() {
                let is_region_error = matches!(
                    err,
                    IdError::Character { position: p, reason: REGION_REASON, .. } if p == position + 1
                );
                prop_assert!(is_region_error);
            } else {
                let is_check_error = matches!(err, IdError::CheckCharacter { .. });
                prop_assert!(is_check_error);
            }
        }

        #[test]
        fn prop_credit_org_code_injective(a in 0..CREDIT_ORG_SEQ_LIMIT, b in 0..CREDIT_ORG_SEQ_LIMIT) {
            prop_assume!(a != b);
            prop_assert_ne!(credit_org_code(a), credit_org_code(b));
        }
    }
}
