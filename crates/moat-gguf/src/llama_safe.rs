//! What llama.cpp trusts in a file. A file can pass every format check of
//! [`GgufFile`] and still carry values that llama.cpp checks with `GGML_ASSERT`
//! or `GGML_ABORT`, which end the whole process (a server with all its other
//! models and requests), not just the load, or that its Rust binding converts
//! with a panic. [`check_llama_safe`] finds them first, so such a file is an
//! error instead.
//!
//! The rules mirror llama.cpp's `llama_model::load_hparams` and ggml's CPU
//! operators (the llama.cpp vendored by `llama-cpp-sys-2`), and were found by
//! corrupting a real model's header one value at a time; what llama.cpp
//! refuses with an ordinary error (a wrong head count, a missing tensor, a 2-D
//! weight of the wrong type or shape) is left to it. Only values of integer or
//! float type are judged: llama.cpp refuses a key of the wrong type with an
//! ordinary error too.

use std::fmt;

use crate::file::GgufFile;
use crate::ggml_type::GgmlType;
use crate::value::{Array, Value};

/// llama.cpp's `LLAMA_MAX_LAYERS`: `block_count` must be 1 to this.
pub const MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const MAX_EXPERTS: u64 = 1024;
/// `context_length` is an `int32_t` where llama.cpp hands it out.
const MAX_CONTEXT: u64 = i32::MAX as u64;
/// The names llama.cpp accepts for `rope.scaling.type`.
const ROPE_SCALING_TYPES: [&str; 4] = ["none", "linear", "yarn", "longrope"];

/// A value llama.cpp would abort on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafeForLlama {
    /// A metadata key (`llama.block_count`) and what is wrong with its value.
    Hyperparameter { key: String, problem: String },
    /// A tensor and what is wrong with it.
    Tensor { name: String, problem: String },
}

impl fmt::Display for UnsafeForLlama {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hyperparameter { key, problem } => write!(f, "hyperparameter '{key}' {problem}"),
            Self::Tensor { name, problem } => write!(f, "tensor '{name}' {problem}"),
        }?;
        write!(
            f,
            "; llama.cpp would abort on it, so the file is corrupt or hostile"
        )
    }
}

impl std::error::Error for UnsafeForLlama {}

/// Checks what llama.cpp asserts on: the hyperparameters, and that vectors
/// (norm weights, biases) are F32, the one type ggml's CPU operators combine
/// with activations (llama.cpp's converter writes them so). Hyperparameters are
/// found by the `general.architecture` prefix; a file without one has none to
/// check here (llama.cpp refuses it).
pub fn check_llama_safe(file: &GgufFile) -> Result<(), UnsafeForLlama> {
    check_vectors(file)?;
    check_epsilons(file)?;
    let Some(arch) = file.architecture() else {
        return Ok(());
    };
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let fail = |suffix: &str, problem: String| {
        Err(UnsafeForLlama::Hyperparameter {
            key: key(suffix),
            problem,
        })
    };

    let layers = int(file, &key("block_count"));
    if let Some(layers) = layers {
        if !(1..=i128::from(MAX_LAYERS)).contains(&layers) {
            return fail(
                "block_count",
                format!("is {layers}; it must be 1 to {MAX_LAYERS}"),
            );
        }
    }
    let layers = layers.unwrap_or(i128::from(MAX_LAYERS));
    for part in [
        "nextn_predict_layers",
        "posnet.block_count",
        "convnext.block_count",
    ] {
        if let Some(count) = int(file, &key(part)) {
            if !(0..=layers).contains(&count) {
                return fail(part, format!("is {count}; it must be 0 to {layers}"));
            }
        }
    }
    if let Some(context) = int(file, &key("context_length")) {
        if !(0..=i128::from(MAX_CONTEXT)).contains(&context) {
            return fail(
                "context_length",
                format!("is {context}; it must be 0 to {MAX_CONTEXT}"),
            );
        }
    }
    check_experts(file, &key)?;
    if let Some(Value::String(name)) = file.get(&key("rope.scaling.type")) {
        if !ROPE_SCALING_TYPES.contains(&name.as_str()) {
            return fail(
                "rope.scaling.type",
                format!(
                    "is '{name}'; it must be one of {}",
                    ROPE_SCALING_TYPES.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// Expert counts of mixture-of-experts models, as llama.cpp relates them.
fn check_experts(file: &GgufFile, key: &dyn Fn(&str) -> String) -> Result<(), UnsafeForLlama> {
    let count = int(file, &key("expert_count")).unwrap_or(0);
    let used = match file.get(&key("expert_used_count")) {
        Some(Value::Array(values)) => ints(values).into_iter().max().unwrap_or(0),
        Some(value) => int_value(value).unwrap_or(0),
        None => 0,
    };
    let groups = int(file, &key("expert_group_count")).unwrap_or(0);
    let group_used = int(file, &key("expert_group_used_count")).unwrap_or(0);
    let problem = if !(0..=i128::from(MAX_EXPERTS)).contains(&count) {
        Some(("expert_count", format!("is {count}; at most {MAX_EXPERTS}")))
    } else if used < 0 || used > count {
        Some((
            "expert_used_count",
            format!("is {used}; it must be 0 to expert_count ({count})"),
        ))
    } else if count > 0 && used == 0 {
        Some((
            "expert_used_count",
            format!("is 0 with {count} experts; at least one must be used"),
        ))
    } else if groups < 0 || (count == 0 && groups != 0) || (count > 0 && groups >= count) {
        Some((
            "expert_group_count",
            format!("is {groups} with {count} experts; it must be below the expert count"),
        ))
    } else if groups > 1 && count % groups != 0 {
        Some((
            "expert_group_count",
            format!("is {groups}; it must divide the {count} experts"),
        ))
    } else if groups > 1 && !(1..groups).contains(&group_used) {
        Some((
            "expert_group_used_count",
            format!(
                "is {group_used}; it must be 1 to {} with {groups} groups",
                groups - 1
            ),
        ))
    } else {
        None
    };
    match problem {
        Some((suffix, problem)) => Err(UnsafeForLlama::Hyperparameter {
            key: key(suffix),
            problem,
        }),
        None => Ok(()),
    }
}

/// A tensor of one dimension (a norm's weight, a bias) or a norm's weight of
/// any shape must be F32: ggml's CPU operators multiply or add it to F32
/// activations and abort on any other type (at the first decode, not at load).
fn check_vectors(file: &GgufFile) -> Result<(), UnsafeForLlama> {
    let bad = file.tensors.iter().find(|tensor| {
        (tensor.dims.len() <= 1 || tensor.name.ends_with("_norm.weight"))
            && tensor.ggml_type != GgmlType::F32
    });
    match bad {
        Some(tensor) => Err(UnsafeForLlama::Tensor {
            name: tensor.name.clone(),
            problem: format!(
                "is a vector of type {}; vectors and norm weights must be F32",
                tensor.ggml_type.name()
            ),
        }),
        None => Ok(()),
    }
}

/// Every `…epsilon` or `….eps` value (layer norms, group norms, per-layer
/// arrays) must be a number at least 0: ggml's norms assert `eps >= 0`, which
/// NaN fails too.
fn check_epsilons(file: &GgufFile) -> Result<(), UnsafeForLlama> {
    for (key, value) in &file.metadata {
        if !(key.ends_with("epsilon") || key.ends_with(".eps")) {
            continue;
        }
        let values = match value {
            Value::Array(array) => floats(array),
            value => value.as_f64().into_iter().collect(),
        };
        if let Some(bad) = values.into_iter().find(|&v| v.is_nan() || v < 0.0) {
            return Err(UnsafeForLlama::Hyperparameter {
                key: key.clone(),
                problem: format!("is {bad}; it must be a number at least 0"),
            });
        }
    }
    Ok(())
}

/// An integer value of any width, signed or not.
fn int(file: &GgufFile, key: &str) -> Option<i128> {
    int_value(file.get(key)?)
}

fn int_value(value: &Value) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
}

fn ints(array: &Array) -> Vec<i128> {
    (0..array.len())
        .filter_map(|i| array.get(i))
        .filter_map(|value| int_value(&value))
        .collect()
}

fn floats(array: &Array) -> Vec<f64> {
    (0..array.len())
        .filter_map(|i| array.get(i))
        .filter_map(|value| value.as_f64())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::TensorInfo;

    fn file(metadata: Vec<(&str, Value)>) -> GgufFile {
        let mut all = vec![(
            "general.architecture".to_owned(),
            Value::String("llama".into()),
        )];
        all.extend(metadata.into_iter().map(|(k, v)| (k.to_owned(), v)));
        GgufFile {
            version: 3,
            metadata: all,
            tensors: Vec::new(),
            alignment: 32,
            data_offset: 0,
            file_size: None,
        }
    }

    fn problem(metadata: Vec<(&str, Value)>) -> Option<String> {
        match check_llama_safe(&file(metadata)) {
            Ok(()) => None,
            Err(UnsafeForLlama::Hyperparameter { key, .. }) => Some(key),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_real_models_hyperparameters_pass() {
        assert_eq!(
            problem(vec![
                ("llama.block_count", Value::U32(30)),
                ("llama.context_length", Value::U32(8192)),
                ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
                ("llama.rope.scaling.type", Value::String("yarn".into())),
                ("llama.expert_count", Value::U32(8)),
                ("llama.expert_used_count", Value::U32(2)),
            ]),
            None
        );
        // No architecture: nothing to judge by key.
        let mut bare = file(Vec::new());
        bare.metadata.clear();
        assert!(check_llama_safe(&bare).is_ok());
    }

    #[test]
    fn block_count_must_be_one_to_max_layers() {
        for bad in [
            Value::U32(0),
            Value::U32(513),
            Value::U32(u32::MAX),
            Value::I32(-1),
        ] {
            assert_eq!(
                problem(vec![("llama.block_count", bad)]).as_deref(),
                Some("llama.block_count")
            );
        }
        assert_eq!(problem(vec![("llama.block_count", Value::U32(512))]), None);
        // Only integers are judged: llama.cpp refuses a string with an ordinary error.
        assert_eq!(
            problem(vec![("llama.block_count", Value::String("x".into()))]),
            None
        );
        assert_eq!(
            problem(vec![
                ("llama.block_count", Value::U32(4)),
                ("llama.nextn_predict_layers", Value::U32(5)),
            ])
            .as_deref(),
            Some("llama.nextn_predict_layers")
        );
    }

    #[test]
    fn context_length_must_fit_an_i32() {
        assert_eq!(
            problem(vec![("llama.context_length", Value::U32(u32::MAX))]).as_deref(),
            Some("llama.context_length")
        );
        assert_eq!(
            problem(vec![("llama.context_length", Value::U32(i32::MAX as u32))]),
            None
        );
    }

    #[test]
    fn epsilons_must_be_numbers_at_least_zero() {
        for bad in [-1.0f32, f32::NAN] {
            assert_eq!(
                problem(vec![(
                    "llama.attention.layer_norm_rms_epsilon",
                    Value::F32(bad)
                )])
                .as_deref(),
                Some("llama.attention.layer_norm_rms_epsilon")
            );
        }
        let per_layer = Array::F32(vec![1e-6, -1e-6]);
        assert_eq!(
            problem(vec![("xielu.eps", Value::Array(per_layer))]).as_deref(),
            Some("xielu.eps")
        );
        assert_eq!(
            problem(vec![(
                "llama.attention.layer_norm_epsilon",
                Value::F32(0.0)
            )]),
            None
        );
    }

    #[test]
    fn expert_counts_must_agree() {
        let experts = |count: u32, used: Value, groups: u32, group_used: u32| {
            problem(vec![
                ("llama.expert_count", Value::U32(count)),
                ("llama.expert_used_count", used),
                ("llama.expert_group_count", Value::U32(groups)),
                ("llama.expert_group_used_count", Value::U32(group_used)),
            ])
        };
        assert_eq!(experts(8, Value::U32(2), 0, 0), None);
        assert_eq!(experts(8, Value::U32(2), 4, 2), None);
        assert_eq!(experts(0, Value::U32(0), 0, 0), None);
        let per_layer = |v: Vec<u32>| Value::Array(Array::U32(v));
        assert_eq!(experts(8, per_layer(vec![2, 0, 2]), 0, 0), None);
        for (count, used, groups, group_used, key) in [
            (2000, Value::U32(2), 0, 0, "expert_count"),
            (8, Value::U32(9), 0, 0, "expert_used_count"),
            (8, per_layer(vec![2, 9]), 0, 0, "expert_used_count"),
            (8, Value::U32(0), 0, 0, "expert_used_count"),
            (0, Value::U32(1), 0, 0, "expert_used_count"),
            (0, Value::U32(0), 2, 0, "expert_group_count"),
            (8, Value::U32(2), 8, 1, "expert_group_count"),
            (8, Value::U32(2), 3, 1, "expert_group_count"),
            (8, Value::U32(2), 4, 0, "expert_group_used_count"),
            (8, Value::U32(2), 4, 4, "expert_group_used_count"),
        ] {
            assert_eq!(
                experts(count, used, groups, group_used),
                Some(format!("llama.{key}")),
                "{count} {groups} {group_used}"
            );
        }
    }

    #[test]
    fn rope_scaling_type_must_be_one_llama_cpp_knows() {
        assert_eq!(
            problem(vec![(
                "llama.rope.scaling.type",
                Value::String("warp".into())
            )])
            .as_deref(),
            Some("llama.rope.scaling.type")
        );
        let error = check_llama_safe(&file(vec![("llama.block_count", Value::U32(0))]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("'llama.block_count' is 0"), "{error}");
    }

    #[test]
    fn vectors_and_norm_weights_must_be_f32() {
        let tensor = |name: &str, dims: Vec<u64>, ggml_type: GgmlType| TensorInfo {
            name: name.to_owned(),
            dims,
            ggml_type,
            offset: 0,
        };
        let mut model = file(Vec::new());
        model.tensors = vec![
            tensor("blk.0.attn_q.weight", vec![576, 576], GgmlType::Q4_1),
            tensor("blk.0.attn_q.bias", vec![576], GgmlType::F32),
            tensor("blk.0.attn_q_norm.weight", vec![64, 9], GgmlType::F32),
            tensor("output_norm.weight", vec![576], GgmlType::F32),
        ];
        assert!(check_llama_safe(&model).is_ok());
        for (at, bad) in [(1, GgmlType::F16), (2, GgmlType::BF16), (3, GgmlType::Q8_0)] {
            let mut hostile = model.clone();
            hostile.tensors[at].ggml_type = bad;
            let error = check_llama_safe(&hostile).unwrap_err();
            let name = &model.tensors[at].name;
            assert!(
                matches!(&error, UnsafeForLlama::Tensor { name: found, .. } if found == name),
                "{error}"
            );
        }
    }
}
