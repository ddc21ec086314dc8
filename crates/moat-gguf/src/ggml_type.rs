//! The ggml tensor types and the llama file-type names, as tables.
//!
//! Owns the mapping from a ggml type id to its name, its block size (elements
//! per block) and its type size (bytes per block), and the names of
//! `general.file_type` values. It does not know how tensors are laid out in a
//! file or how to decode their data.
//!
//! Numbers checked against ggml's `enum ggml_type` (ggml.h), the block structs
//! in ggml-common.h (type size = `sizeof(block_*)`, each guarded there by a
//! `static_assert`), and `enum llama_ftype` (llama.h). Ids 4 and 5 (Q4_2,
//! Q4_3), 31 to 33 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) and 36 to 38 (IQ4_NL_4_4,
//! IQ4_NL_4_8, IQ4_NL_8_8) were removed from GGUF files and read as
//! [`GgmlType::Unknown`].

use std::fmt;

/// The element type of a tensor, as stored in its tensor info.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
    /// An id this crate does not know: removed, or newer than this table.
    Unknown(u32),
}

/// Name, elements per block and bytes per block of a known type.
struct Traits {
    name: &'static str,
    block_size: u64,
    type_size: u64,
}

const fn traits(name: &'static str, block_size: u64, type_size: u64) -> Option<Traits> {
    Some(Traits {
        name,
        block_size,
        type_size,
    })
}

impl GgmlType {
    /// The type for a ggml type id; unknown ids become [`GgmlType::Unknown`].
    pub fn from_id(id: u32) -> GgmlType {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            42 => Q2_0,
            other => Unknown(other),
        }
    }

    /// The ggml type id as stored in the file.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
            Q2_0 => 42,
            Unknown(id) => id,
        }
    }

    fn traits(self) -> Option<Traits> {
        use GgmlType::*;
        match self {
            F32 => traits("F32", 1, 4),
            F16 => traits("F16", 1, 2),
            Q4_0 => traits("Q4_0", 32, 18),
            Q4_1 => traits("Q4_1", 32, 20),
            Q5_0 => traits("Q5_0", 32, 22),
            Q5_1 => traits("Q5_1", 32, 24),
            Q8_0 => traits("Q8_0", 32, 34),
            Q8_1 => traits("Q8_1", 32, 36),
            Q2_K => traits("Q2_K", 256, 84),
            Q3_K => traits("Q3_K", 256, 110),
            Q4_K => traits("Q4_K", 256, 144),
            Q5_K => traits("Q5_K", 256, 176),
            Q6_K => traits("Q6_K", 256, 210),
            Q8_K => traits("Q8_K", 256, 292),
            IQ2_XXS => traits("IQ2_XXS", 256, 66),
            IQ2_XS => traits("IQ2_XS", 256, 74),
            IQ3_XXS => traits("IQ3_XXS", 256, 98),
            IQ1_S => traits("IQ1_S", 256, 50),
            IQ4_NL => traits("IQ4_NL", 32, 18),
            IQ3_S => traits("IQ3_S", 256, 110),
            IQ2_S => traits("IQ2_S", 256, 82),
            IQ4_XS => traits("IQ4_XS", 256, 136),
            I8 => traits("I8", 1, 1),
            I16 => traits("I16", 1, 2),
            I32 => traits("I32", 1, 4),
            I64 => traits("I64", 1, 8),
            F64 => traits("F64", 1, 8),
            IQ1_M => traits("IQ1_M", 256, 56),
            BF16 => traits("BF16", 1, 2),
            TQ1_0 => traits("TQ1_0", 256, 54),
            TQ2_0 => traits("TQ2_0", 256, 66),
            MXFP4 => traits("MXFP4", 32, 17),
            NVFP4 => traits("NVFP4", 64, 36),
            Q1_0 => traits("Q1_0", 128, 18),
            Q2_0 => traits("Q2_0", 64, 18),
            Unknown(_) => None,
        }
    }

    /// The upper-case name llama.cpp prints ("Q4_K", "F16"); "unknown" for
    /// [`GgmlType::Unknown`] (whose `Display` also shows the id).
    pub fn name(self) -> &'static str {
        self.traits().map_or("unknown", |t| t.name)
    }

    /// Elements per block (1 for plain types, 32 or 256 for most quantized
    /// ones); `None` for an unknown type.
    pub fn block_size(self) -> Option<u64> {
        self.traits().map(|t| t.block_size)
    }

    /// Bytes per block; `None` for an unknown type.
    pub fn type_size(self) -> Option<u64> {
        self.traits().map(|t| t.type_size)
    }

    /// Whether this crate knows the type's block layout.
    pub fn is_known(self) -> bool {
        !matches!(self, GgmlType::Unknown(_))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgmlType::Unknown(id) => write!(f, "unknown ggml type {id}"),
            known => f.write_str(known.name()),
        }
    }
}

/// The name of a `general.file_type` value (llama.cpp's `enum llama_ftype`),
/// in the short form used by quantization tools and file names: "F16",
/// "Q4_1", "Q4_K_M", "MXFP4_MOE". `None` for values that are not in the enum.
///
/// Values 4 (Q4_1_SOME_F16) and 33 to 35 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) are
/// retired but still name what older files say; 5 and 6 were never written to
/// GGUF files and have no name.
pub fn file_type_name(ftype: u32) -> Option<&'static str> {
    let name = match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        33 => "Q4_0_4_4",
        34 => "Q4_0_4_8",
        35 => "Q4_0_8_8",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    };
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_round_trips_and_gaps_are_unknown() {
        let gaps = [4, 5, 31, 32, 33, 36, 37, 38];
        for id in 0..64 {
            let ty = GgmlType::from_id(id);
            assert_eq!(ty.id(), id);
            let expect_known = id <= 42 && !gaps.contains(&id);
            assert_eq!(ty.is_known(), expect_known, "id {id}");
            assert_eq!(ty.block_size().is_some(), expect_known);
            assert_eq!(ty.type_size().is_some(), expect_known);
        }
    }

    #[test]
    fn k_quant_sizes_match_ggml_common_block_structs() {
        // QK_K = 256; the sums are the struct fields of ggml-common.h.
        assert_eq!(GgmlType::Q2_K.type_size(), Some(256 / 16 + 256 / 4 + 2 * 2));
        assert_eq!(GgmlType::Q3_K.type_size(), Some(256 / 8 + 256 / 4 + 12 + 2));
        assert_eq!(GgmlType::Q4_K.type_size(), Some(2 * 2 + 12 + 256 / 2));
        assert_eq!(
            GgmlType::Q5_K.type_size(),
            Some(2 * 2 + 12 + 256 / 8 + 256 / 2)
        );
        assert_eq!(
            GgmlType::Q6_K.type_size(),
            Some(256 / 2 + 256 / 4 + 256 / 16 + 2)
        );
        assert_eq!(
            GgmlType::TQ1_0.type_size(),
            Some((256 - 4 * 256 / 64) / 5 + 256 / 64 + 2)
        );
        assert_eq!(GgmlType::MXFP4.type_size(), Some(1 + 32 / 2));
        assert_eq!(GgmlType::Q4_K.name(), "Q4_K");
        assert_eq!(GgmlType::Unknown(31).to_string(), "unknown ggml type 31");
    }

    #[test]
    fn file_type_names_follow_llama_ftype() {
        assert_eq!(file_type_name(0), Some("F32"));
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(32), Some("BF16"));
        assert_eq!(file_type_name(38), Some("MXFP4_MOE"));
        assert_eq!(file_type_name(5), None);
        assert_eq!(file_type_name(6), None);
        assert_eq!(file_type_name(1024), None);
    }
}
