//! TensorFlow SavedModels through the TensorFlow C API (`tensorflow` crate).
//!
//! Loads `<model-dir>/saved_model` with the `serve` tag and reads its `serving_default`
//! signature (or its only one): inputs are matched by name (`input_ids`, `attention_mask`,
//! `token_type_ids`; a lone input is taken as the ids) and fed as int64 or int32, as the
//! signature declares. The output is `last_hidden_state` / `token_embeddings` /
//! `sentence_embedding` / `embeddings` when present, else the first by name.
//!
//! Session options travel as a serialized `ConfigProto`, written by hand: thread pools on the
//! CPU, GPU memory growth (`gpu_options.allow_growth`) and the visible GPU on a GPU build of
//! the library. FP16 is not offered for this backend.

use super::{Backend, Loaded};
use crate::config::{Config, DType, DeviceChoice};
use crate::error::StartError;
use crate::model::{Batch, Output};
use tensorflow::{
    DataType, Graph, Operation, SavedModelBundle, SessionOptions, SessionRunArgs, Tensor,
};

struct Input {
    op: Operation,
    index: i32,
    dtype: DataType,
    /// 0 = ids, 1 = mask, 2 = token types.
    source: usize,
}

pub struct Tf {
    bundle: SavedModelBundle,
    _graph: Graph,
    inputs: Vec<Input>,
    output: (Operation, i32),
}

pub fn load(config: &Config) -> Result<Loaded, StartError> {
    let dir = config.model_dir().join("saved_model");
    if !dir.join("saved_model.pb").exists() {
        return Err(StartError::Model(format!("no SavedModel at {}", dir.display())));
    }
    if config.dtype == DType::F16 {
        return Err(StartError::Device("f16 is offered by the torch backend only".into()));
    }
    let mut options = SessionOptions::new();
    options
        .set_config(&config_proto(config))
        .map_err(|e| StartError::Backend(format!("session options: {e}")))?;
    let mut graph = Graph::new();
    let bundle = SavedModelBundle::load(&options, ["serve"], &mut graph, &dir)
        .map_err(|e| StartError::Model(format!("cannot load {}: {e}", dir.display())))?;
    let gpus: Vec<String> = bundle
        .session
        .device_list()
        .map_err(|e| StartError::Backend(e.to_string()))?
        .into_iter()
        .filter(|d| d.device_type == "GPU")
        .map(|d| d.name)
        .collect();
    let device = match (config.device, gpus.first()) {
        (DeviceChoice::Cpu, _) | (DeviceChoice::Auto, None) => "cpu".to_string(),
        (_, Some(gpu)) => gpu.clone(),
        (DeviceChoice::Cuda(n), None) => {
            return Err(StartError::Device(format!(
                "cuda:{n} requested but this TensorFlow library sees no GPU (the tensorflow-cpu \
                 wheel has none; a GPU build of libtensorflow is needed)"
            )))
        }
    };

    let sigs = bundle.meta_graph_def().signatures();
    let sig = match bundle.meta_graph_def().get_signature("serving_default") {
        Ok(s) => s,
        Err(_) if sigs.len() == 1 => sigs.values().next().expect("one signature"),
        Err(_) => {
            let names: Vec<_> = sigs.keys().collect();
            return Err(StartError::Model(format!("no serving_default signature among {names:?}")));
        }
    };
    let mut inputs = Vec::new();
    let mut names: Vec<&String> = sig.inputs().keys().collect();
    names.sort();
    for name in names {
        let source = match name.as_str() {
            "input_ids" => 0,
            "attention_mask" => 1,
            "token_type_ids" => 2,
            _ if sig.inputs().len() == 1 => 0,
            other => return Err(StartError::Model(format!("unknown signature input {other:?}"))),
        };
        let info = &sig.inputs()[name];
        if !matches!(info.dtype(), DataType::Int64 | DataType::Int32) {
            return Err(StartError::Model(format!(
                "input {name} is {:?}, not an integer",
                info.dtype()
            )));
        }
        let op = graph
            .operation_by_name_required(&info.name().name)
            .map_err(|e| StartError::Model(e.to_string()))?;
        inputs.push(Input { op, index: info.name().index, dtype: info.dtype(), source });
    }
    if !inputs.iter().any(|i| i.source == 0) {
        return Err(StartError::Model("the signature has no input_ids input".into()));
    }
    let preferred = ["last_hidden_state", "token_embeddings", "sentence_embedding", "embeddings"];
    let mut outs: Vec<&String> = sig.outputs().keys().collect();
    outs.sort();
    let out_name = preferred
        .iter()
        .find_map(|p| outs.iter().find(|o| o.as_str() == *p))
        .or(outs.first())
        .ok_or_else(|| StartError::Model("the signature has no outputs".into()))?;
    let out_info = &sig.outputs()[*out_name];
    let out_op = graph
        .operation_by_name_required(&out_info.name().name)
        .map_err(|e| StartError::Model(e.to_string()))?;
    tracing::info!(
        device = %device,
        inputs = ?sig.inputs().keys().collect::<Vec<_>>(),
        output = %out_name,
        version = tensorflow::version().unwrap_or_default(),
        "savedmodel loaded"
    );
    let output = (out_op, out_info.name().index);
    let tf = Tf { bundle, _graph: graph, inputs, output };
    Ok(Loaded { backend: Box::new(tf), device, dtype: "f32".into() })
}

impl Backend for Tf {
    fn forward(&mut self, batch: &Batch) -> Result<Output, String> {
        let dims = [batch.size as u64, batch.len as u64];
        let sources = [&batch.input_ids, &batch.attention_mask, &batch.token_type_ids];
        // Tensors must outlive the run arguments that borrow them.
        let mut wide: Vec<Tensor<i64>> = Vec::new();
        let mut narrow: Vec<Tensor<i32>> = Vec::new();
        for input in &self.inputs {
            let values = sources[input.source];
            if input.dtype == DataType::Int64 {
                wide.push(Tensor::new(&dims).with_values(values).map_err(|e| e.to_string())?);
            } else {
                let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
                narrow.push(Tensor::new(&dims).with_values(&v).map_err(|e| e.to_string())?);
            }
        }
        let mut args = SessionRunArgs::new();
        let (mut w, mut n) = (wide.iter(), narrow.iter());
        for input in &self.inputs {
            if input.dtype == DataType::Int64 {
                args.add_feed(&input.op, input.index, w.next().expect("one tensor per input"));
            } else {
                args.add_feed(&input.op, input.index, n.next().expect("one tensor per input"));
            }
        }
        let token = args.request_fetch(&self.output.0, self.output.1);
        self.bundle.session.run(&mut args).map_err(|e| e.to_string())?;
        let out: Tensor<f32> = args.fetch(token).map_err(|e| e.to_string())?;
        let shape: Vec<usize> = out.dims().iter().map(|&d| d as usize).collect();
        let values = out.to_vec();
        match shape[..] {
            [b, t, dim] if b == batch.size && t == batch.len => Ok(Output::Tokens { dim, values }),
            [b, dim] if b == batch.size => Ok(Output::Pooled { dim, values }),
            _ => Err(format!(
                "unexpected output shape {shape:?} for a batch of {}x{}",
                batch.size, batch.len
            )),
        }
    }
}

/// A serialized `tensorflow.ConfigProto` for `config`.
fn config_proto(config: &Config) -> Vec<u8> {
    let mut p = Vec::new();
    if config.device == DeviceChoice::Cpu {
        // device_count (field 1, map<string, int32>): {"GPU": 0}
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, b"GPU");
        varint_field(&mut entry, 2, 0);
        bytes_field(&mut p, 1, &entry);
    }
    varint_field(&mut p, 2, config.intra_op_threads() as u64); // intra_op_parallelism_threads
    varint_field(&mut p, 5, config.inter_op_threads.max(1) as u64); // inter_op_parallelism_threads
                                                                    // gpu_options (field 6): allow_growth (4) = true, visible_device_list (5)
    let mut gpu = Vec::new();
    varint_field(&mut gpu, 4, 1);
    if let DeviceChoice::Cuda(n) = config.device {
        bytes_field(&mut gpu, 5, n.to_string().as_bytes());
    }
    bytes_field(&mut p, 6, &gpu);
    varint_field(&mut p, 7, 1); // allow_soft_placement
    p
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_proto_bytes() {
        let mut c = Config::for_model("/m", crate::config::BackendKind::Tensorflow);
        c.device = DeviceChoice::Cpu;
        c.intra_op_threads = Some(2);
        c.inter_op_threads = 1;
        let p = config_proto(&c);
        // device_count {"GPU": 0}, intra 2, inter 1, gpu_options {allow_growth}, soft placement
        let want = [
            0x0a, 0x07, 0x0a, 0x03, b'G', b'P', b'U', 0x10, 0x00, 0x10, 0x02, 0x28, 0x01, 0x32,
            0x02, 0x20, 0x01, 0x38, 0x01,
        ];
        assert_eq!(p, want);
    }
}
