//! TorchScript models through libtorch (`tch`).
//!
//! Loads `<model-dir>/model.torchscript.pt`, finds out how `forward` wants its inputs by trying
//! `(input_ids, attention_mask, token_type_ids)`, then two, then one argument on a warm-up
//! batch, and accepts as output a tensor `[batch, tokens, dim]` (token embeddings, pooled by
//! the service), `[batch, dim]` (already pooled), or a tuple/dict whose first tensor is one.

use super::{Backend, Loaded};
use crate::config::{Config, DType, DeviceChoice};
use crate::error::StartError;
use crate::model::{Batch, Output};
use tch::{CModule, Device, IValue, Kind, Tensor};

pub struct Torch {
    module: CModule,
    device: Device,
    /// How many of (ids, mask, types) `forward` takes.
    arity: usize,
}

pub fn load(config: &Config) -> Result<Loaded, StartError> {
    let path = config.model_dir().join("model.torchscript.pt");
    if !path.exists() {
        return Err(StartError::Model(format!("no TorchScript model at {}", path.display())));
    }
    let device = match config.device {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto => Device::cuda_if_available(),
        DeviceChoice::Cuda(n)
            if tch::Cuda::is_available() && n < tch::Cuda::device_count() as usize =>
        {
            Device::Cuda(n)
        }
        DeviceChoice::Cuda(n) => {
            return Err(StartError::Device(format!(
                "cuda:{n} requested but libtorch sees {} GPU(s) (CUDA available: {})",
                tch::Cuda::device_count(),
                tch::Cuda::is_available()
            )))
        }
    };
    let half = match (config.dtype, device) {
        (DType::F16, Device::Cpu) => {
            return Err(StartError::Device("f16 needs a GPU; use --dtype f32 on the CPU".into()))
        }
        (DType::F16, _) => true,
        (DType::F32, _) => false,
    };
    if device == Device::Cpu {
        tch::set_num_threads(config.intra_op_threads() as i32);
        tch::set_num_interop_threads(config.inter_op_threads.max(1) as i32);
    }
    // The profiling executor re-specialises the graph for every new (batch, length) shape,
    // which dynamic batching produces all the time: measured on MiniLM it costs ~70% more CPU
    // per text than running the graph as scripted.
    tch::jit::set_profiling_mode(false);
    tch::jit::set_graph_executor_optimize(false);
    let mut module = CModule::load_on_device(&path, device)
        .map_err(|e| StartError::Model(format!("cannot load {}: {e}", path.display())))?;
    module.set_eval();
    if half {
        module.to(device, Kind::Half, false);
    }
    let device_name = match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    };
    tracing::info!(device = %device_name, half, threads = tch::get_num_threads(), "torchscript model loaded");
    let torch = Torch { module, device, arity: 0 };
    Ok(Loaded {
        backend: Box::new(torch),
        device: device_name,
        dtype: if half { "f16" } else { "f32" }.into(),
    })
}

impl Torch {
    fn inputs(&self, batch: &Batch) -> Result<Vec<IValue>, tch::TchError> {
        let shape = [batch.size as i64, batch.len as i64];
        let tensor = |v: &[i64]| -> Result<IValue, tch::TchError> {
            Ok(IValue::Tensor(Tensor::f_from_slice(v)?.f_view(shape)?.f_to(self.device)?))
        };
        Ok(vec![
            tensor(&batch.input_ids)?,
            tensor(&batch.attention_mask)?,
            tensor(&batch.token_type_ids)?,
        ])
    }

    fn run(&self, inputs: &[IValue], arity: usize) -> Result<Tensor, String> {
        let out =
            tch::no_grad(|| self.module.forward_is(&inputs[..arity])).map_err(|e| e.to_string())?;
        first_tensor(out).ok_or_else(|| "forward returned no tensor".to_string())
    }
}

/// The tensor in an output: itself, or the first tensor of a tuple, list or dict.
fn first_tensor(v: IValue) -> Option<Tensor> {
    match v {
        IValue::Tensor(t) => Some(t),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            items.into_iter().find_map(first_tensor)
        }
        IValue::TensorList(ts) => ts.into_iter().next(),
        IValue::GenericDict(pairs) => pairs.into_iter().find_map(|(_, v)| first_tensor(v)),
        _ => None,
    }
}

impl Backend for Torch {
    fn forward(&mut self, batch: &Batch) -> Result<Output, String> {
        let inputs = self.inputs(batch).map_err(|e| e.to_string())?;
        let out = if self.arity > 0 {
            self.run(&inputs, self.arity)?
        } else {
            // Discovery, on the warm-up batch: the widest signature that works.
            let mut last = String::new();
            let mut found = None;
            for arity in [3, 2, 1] {
                match self.run(&inputs, arity) {
                    Ok(t) => {
                        found = Some((arity, t));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let (arity, t) =
                found.ok_or_else(|| format!("forward refused 1 to 3 inputs: {last}"))?;
            tracing::info!(inputs = arity, output = ?t.size(), "torchscript forward discovered");
            self.arity = arity;
            t
        };
        let size = out.size();
        let values: Vec<f32> = out
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_to(Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_view(-1))
            .and_then(|t| Vec::<f32>::try_from(&t))
            .map_err(|e| e.to_string())?;
        match size[..] {
            [b, t, dim] if b as usize == batch.size && t as usize == batch.len => {
                Ok(Output::Tokens { dim: dim as usize, values })
            }
            [b, dim] if b as usize == batch.size => {
                Ok(Output::Pooled { dim: dim as usize, values })
            }
            _ => Err(format!(
                "unexpected output shape {size:?} for a batch of {}x{}",
                batch.size, batch.len
            )),
        }
    }
}
