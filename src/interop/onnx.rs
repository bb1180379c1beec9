//! `pretext export --to onnx`: an encoder as an ONNX graph (IR version 8, opset 17), written
//! with the protobuf types prost generates from ONNX's own onnx.proto (`onnx_pb.rs`, made by
//! bench/gen-onnx-proto.sh).
//!
//! The graph takes `images`, float32 `[batch, channels, height, width]` of pixel/255 with a
//! dynamic batch, normalises them inside the graph (`(x - mean) / std` per channel, the
//! encoder's spec's), runs the network and puts out `features`, float32 `[batch, dim]`, the
//! same as `pretext embed`. The convolutional networks take any height and width (ConvNet-4
//! needs 8 pixels or more: pretext skips its max-pools on smaller maps, the graph always
//! pools); a ViT takes its position embedding's image size. The weights are initializers under
//! their PyTorch names and in PyTorch's layout (a linear layer's weight `[out, in]`, transposed
//! in the graph).

use std::collections::BTreeMap;

use prost::Message;

use super::names::Scheme;
use super::onnx_pb as pb;
use super::torch::{TorchTensor, torch_state};
use crate::Error;
use crate::models::{Encoder, EncoderSpec, Stem};

/// The ONNX IR version written (ONNX 1.10's, read by every current runtime).
pub const IR_VERSION: i64 = 8;
/// The default-domain opset: 17 has LayerNormalization.
pub const OPSET: i64 = 17;
/// The graph's input and output.
pub const INPUT: &str = "images";
pub const OUTPUT: &str = "features";
/// The input's and output's symbolic batch dimension.
const BATCH: &str = "batch";
/// The smallest image side on which ConvNet-4's graph (which always pools) is pretext's.
pub const CONVNET4_MIN_SIZE: usize = 8;
/// PyTorch's BatchNorm epsilon.
const BATCH_NORM_EPSILON: f32 = 1e-5;

/// `encoder` (built from `spec`) as the bytes of an ONNX `ModelProto`, with `metadata` in its
/// `metadata_props`.
pub fn onnx_model(
    encoder: &Encoder,
    spec: &EncoderSpec,
    metadata: &[(String, String)],
) -> Result<Vec<u8>, Error> {
    onnx_model_of(encoder, spec, torch_state(encoder)?, metadata)
}

/// [`onnx_model`] with `state`, the encoder's [`torch_state`], already in hand.
pub fn onnx_model_of(
    encoder: &Encoder,
    spec: &EncoderSpec,
    state: Vec<TorchTensor>,
    metadata: &[(String, String)],
) -> Result<Vec<u8>, Error> {
    if spec.mean.len() != spec.in_channels || spec.std.len() != spec.in_channels {
        return Err(Error::msg(format!(
            "the encoder's spec has {} input channels but {} means and {} standard deviations",
            spec.in_channels,
            spec.mean.len(),
            spec.std.len()
        )));
    }
    if let (Scheme::ConvNet4, Some(size)) = (Scheme::of(encoder), spec.input_size)
        && size < CONVNET4_MIN_SIZE
    {
        return Err(Error::msg(format!(
            "ConvNet-4's ONNX graph max-pools after each of its first three blocks, which pretext \
             skips on maps under 2x2: it takes images of {CONVNET4_MIN_SIZE} pixels or more, and \
             this encoder was trained on {size}-pixel images"
        )));
    }
    let mut g = Graph::new(state);
    let x = g.normalise(spec);
    let (features, spatial) = match (Scheme::of(encoder), encoder) {
        (Scheme::ConvNet4, _) => (g.convnet4(&x)?, None),
        (Scheme::ResNet { depths, bottleneck }, _) => {
            (g.resnet(&x, spec.stem, depths, bottleneck)?, None)
        }
        (Scheme::Vit, Encoder::Vit(vit)) => {
            let layout = spec
                .vit
                .ok_or_else(|| Error::msg("a ViT encoder's spec has no patch layout"))?;
            let heads = vit.blocks.first().map_or(1, |block| block.attn.heads);
            (g.vit(&x, heads, vit.dim())?, Some(layout.image_size))
        }
        (Scheme::Vit, _) => return Err(Error::msg("a ViT scheme for a non-ViT encoder")),
    };
    g.node_named("Identity", &[&features], vec![], OUTPUT);
    g.check_all_weights_used()?;
    let dim = g.channels;
    let graph = g.finish(spec, spatial, dim);
    Ok(model(graph, metadata).encode_to_vec())
}

/// The model around `graph`.
fn model(graph: pb::GraphProto, metadata: &[(String, String)]) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("pretext".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect(),
        ..Default::default()
    }
}

/// A graph under construction: its nodes, its initializers, the encoder's weights not yet
/// placed, a counter for fresh value names, and the channels (features) of the last layer.
struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    weights: BTreeMap<String, TorchTensor>,
    fresh: usize,
    channels: usize,
}

/// A node attribute.
enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
}

impl Attr {
    fn proto(self) -> pb::AttributeProto {
        use pb::attribute_proto::AttributeType;
        let (name, kind) = match &self {
            Attr::Int(n, _) => (n, AttributeType::Int),
            Attr::Ints(n, _) => (n, AttributeType::Ints),
            Attr::Float(n, _) => (n, AttributeType::Float),
        };
        let mut proto = pb::AttributeProto {
            name: Some((*name).to_string()),
            r#type: Some(kind as i32),
            ..Default::default()
        };
        match self {
            Attr::Int(_, v) => proto.i = Some(v),
            Attr::Ints(_, v) => proto.ints = v,
            Attr::Float(_, v) => proto.f = Some(v),
        }
        proto
    }
}

/// `values` as a little-endian tensor of `data_type` and `dims` named `name`.
fn tensor(
    name: &str,
    dims: &[usize],
    data_type: pb::tensor_proto::DataType,
    raw: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// A float32 value description of these dimensions (a name is symbolic, a number fixed).
fn value_info(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Named(s) => Value::DimParam((*s).to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = pb::type_proto::Tensor {
        elem_type: Some(pb::tensor_proto::DataType::Float as i32),
        shape: Some(pb::TensorShapeProto { dim }),
    };
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

enum Dim {
    Fixed(usize),
    Named(&'static str),
}

impl Graph {
    fn new(state: Vec<TorchTensor>) -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            weights: state.into_iter().map(|t| (t.name.clone(), t)).collect(),
            fresh: 0,
            channels: 0,
        }
    }

    /// A node of `op` with one output, a fresh name after `op`, which it returns.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.fresh += 1;
        let output = format!("{}_{}", op.to_ascii_lowercase(), self.fresh);
        self.node_named(op, inputs, attrs, &output);
        output
    }

    fn node_named(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, output: &str) {
        self.nodes.push(pb::NodeProto {
            name: Some(format!("{op}_{}", self.nodes.len())),
            op_type: Some(op.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attrs.into_iter().map(Attr::proto).collect(),
            ..Default::default()
        });
    }

    /// A float32 constant of `dims` (`[]`: a scalar) under a fresh name.
    fn floats(&mut self, dims: &[usize], values: &[f32]) -> String {
        self.fresh += 1;
        let name = format!("const_{}", self.fresh);
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let proto = tensor(&name, dims, pb::tensor_proto::DataType::Float, raw);
        self.initializers.push(proto);
        name
    }

    /// A 1-D int64 constant (shapes, indices) under a fresh name; `scalar` makes it 0-D.
    fn ints(&mut self, values: &[i64], scalar: bool) -> String {
        self.fresh += 1;
        let name = format!("const_{}", self.fresh);
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = if scalar { vec![] } else { vec![values.len()] };
        let proto = tensor(&name, &dims, pb::tensor_proto::DataType::Int64, raw);
        self.initializers.push(proto);
        name
    }

    /// The encoder's tensor `name` as an initializer under that name, and its shape.
    fn weight(&mut self, name: &str) -> Result<(String, Vec<usize>), Error> {
        let t = self
            .weights
            .remove(name)
            .ok_or_else(|| Error::msg(format!("the encoder has no tensor `{name}` to export")))?;
        let raw = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let proto = tensor(name, &t.shape, pb::tensor_proto::DataType::Float, raw);
        self.initializers.push(proto);
        Ok((name.to_string(), t.shape))
    }

    fn has(&self, name: &str) -> bool {
        self.weights.contains_key(name)
    }

    fn check_all_weights_used(&self) -> Result<(), Error> {
        let left: Vec<String> = self.weights.keys().cloned().collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(super::names::listed(
                "the ONNX export has no place for the encoder's tensors",
                &left,
            ))
        }
    }

    /// The input normalised per channel: `(images - mean) / std`.
    fn normalise(&mut self, spec: &EncoderSpec) -> String {
        let c = spec.in_channels;
        let mean = self.floats(&[1, c, 1, 1], &spec.mean);
        let std = self.floats(&[1, c, 1, 1], &spec.std);
        let centred = self.node("Sub", &[INPUT, &mean], vec![]);
        self.node("Div", &[&centred, &std], vec![])
    }

    /// The graph proto: `spatial` fixes the input's height and width (a ViT's image size).
    fn finish(self, spec: &EncoderSpec, spatial: Option<usize>, dim: usize) -> pb::GraphProto {
        let (h, w) = match spatial {
            Some(s) => (Dim::Fixed(s), Dim::Fixed(s)),
            None => (Dim::Named("height"), Dim::Named("width")),
        };
        let input = [Dim::Named(BATCH), Dim::Fixed(spec.in_channels), h, w];
        let doc = format!(
            "pretext {} encoder: `{INPUT}` float32 [batch, {}, height, width] of pixel/255, \
             normalised in the graph with mean {:?} and std {:?}; `{OUTPUT}` float32 [batch, {dim}]",
            spec.arch, spec.in_channels, spec.mean, spec.std
        );
        pb::GraphProto {
            name: Some(format!("pretext_{}", spec.arch)),
            doc_string: Some(doc),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(INPUT, &input)],
            output: vec![value_info(OUTPUT, &[Dim::Named(BATCH), Dim::Fixed(dim)])],
            ..Default::default()
        }
    }

    // --- Convolutional networks ---

    /// `{prefix}.weight` (and `{prefix}.bias` where there is one) as a convolution with
    /// `stride` and `pad` on every side.
    fn conv(&mut self, x: &str, prefix: &str, stride: usize, pad: usize) -> Result<String, Error> {
        let (weight, shape) = self.weight(&format!("{prefix}.weight"))?;
        self.channels = shape[0];
        let mut inputs = vec![x.to_string(), weight];
        let bias = format!("{prefix}.bias");
        if self.has(&bias) {
            inputs.push(self.weight(&bias)?.0);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let (s, p) = (stride as i64, pad as i64);
        let attrs = vec![
            Attr::Ints("kernel_shape", vec![shape[2] as i64, shape[3] as i64]),
            Attr::Ints("strides", vec![s, s]),
            Attr::Ints("pads", vec![p, p, p, p]),
        ];
        Ok(self.node("Conv", &inputs, attrs))
    }

    /// BatchNorm `prefix` with its running statistics.
    fn batch_norm(&mut self, x: &str, prefix: &str) -> Result<String, Error> {
        let mut inputs = vec![x.to_string()];
        for part in ["weight", "bias", "running_mean", "running_var"] {
            inputs.push(self.weight(&format!("{prefix}.{part}"))?.0);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let eps = Attr::Float("epsilon", BATCH_NORM_EPSILON);
        Ok(self.node("BatchNormalization", &inputs, vec![eps]))
    }

    /// conv `conv` (padded to keep the size at stride 1) → BatchNorm `bn`, and a ReLU if `relu`.
    fn conv_bn(
        &mut self,
        x: &str,
        [conv, bn]: [&str; 2],
        stride: usize,
        relu: bool,
    ) -> Result<String, Error> {
        let kernel = self.kernel(&format!("{conv}.weight"))?;
        let y = self.conv(x, conv, stride, kernel / 2)?;
        let y = self.batch_norm(&y, bn)?;
        Ok(if relu {
            self.node("Relu", &[&y], vec![])
        } else {
            y
        })
    }

    /// The kernel side of the convolution weight `name`.
    fn kernel(&self, name: &str) -> Result<usize, Error> {
        self.weights
            .get(name)
            .map(|t| t.shape[2])
            .ok_or_else(|| Error::msg(format!("the encoder has no tensor `{name}` to export")))
    }

    fn max_pool(&mut self, x: &str, kernel: i64, stride: i64, pad: i64) -> String {
        let attrs = vec![
            Attr::Ints("kernel_shape", vec![kernel, kernel]),
            Attr::Ints("strides", vec![stride, stride]),
            Attr::Ints("pads", vec![pad, pad, pad, pad]),
        ];
        self.node("MaxPool", &[x], attrs)
    }

    /// Global average pool, flattened to `[batch, channels]`.
    fn pool_flatten(&mut self, x: &str) -> String {
        let pooled = self.node("GlobalAveragePool", &[x], vec![]);
        self.node("Flatten", &[&pooled], vec![Attr::Int("axis", 1)])
    }

    /// ConvNet-4: four conv3x3-BN-ReLU blocks, a 2x2 max-pool after the first three.
    fn convnet4(&mut self, x: &str) -> Result<String, Error> {
        let mut x = x.to_string();
        for i in 0..4 {
            let (conv, bn) = (format!("blocks.{i}.conv"), format!("blocks.{i}.bn"));
            x = self.conv_bn(&x, [&conv, &bn], 1, true)?;
            if i < 3 {
                x = self.max_pool(&x, 2, 2, 0);
            }
        }
        Ok(self.pool_flatten(&x))
    }

    /// A torchvision ResNet: stem, four stages of basic or bottleneck blocks, average pool.
    fn resnet(
        &mut self,
        x: &str,
        stem: Stem,
        depths: [usize; 4],
        bottleneck: bool,
    ) -> Result<String, Error> {
        let stride = match stem {
            Stem::Cifar => 1,
            Stem::Imagenet => 2,
        };
        let mut x = self.conv_bn(x, ["conv1", "bn1"], stride, true)?;
        if stem == Stem::Imagenet {
            x = self.max_pool(&x, 3, 2, 1);
        }
        for (stage, depth) in depths.into_iter().enumerate() {
            for j in 0..depth {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let prefix = format!("layer{}.{j}", stage + 1);
                x = self.residual(&x, &prefix, stride, bottleneck)?;
            }
        }
        Ok(self.pool_flatten(&x))
    }

    /// Residual block `prefix`: `relu(branch(x) + skip(x))`, the skip a strided 1x1 conv and
    /// BatchNorm where the block has a `downsample`.
    fn residual(
        &mut self,
        x: &str,
        prefix: &str,
        stride: usize,
        bottleneck: bool,
    ) -> Result<String, Error> {
        let p = |part: &str| format!("{prefix}.{part}");
        let skip = if self.has(&p("downsample.0.weight")) {
            let (conv, bn) = (p("downsample.0"), p("downsample.1"));
            let y = self.conv(x, &conv, stride, 0)?;
            self.batch_norm(&y, &bn)?
        } else {
            x.to_string()
        };
        let y = if bottleneck {
            let y = self.conv_bn(x, [&p("conv1"), &p("bn1")], 1, true)?;
            let y = self.conv_bn(&y, [&p("conv2"), &p("bn2")], stride, true)?;
            self.conv_bn(&y, [&p("conv3"), &p("bn3")], 1, false)?
        } else {
            let y = self.conv_bn(x, [&p("conv1"), &p("bn1")], stride, true)?;
            self.conv_bn(&y, [&p("conv2"), &p("bn2")], 1, false)?
        };
        let sum = self.node("Add", &[&y, &skip], vec![]);
        Ok(self.node("Relu", &[&sum], vec![]))
    }

    // --- Vision Transformer ---

    /// timm's ViT with `heads` heads of width `dim / heads`: patch embedding, class token,
    /// positions, pre-norm blocks, final LayerNorm; the class token out.
    fn vit(&mut self, x: &str, heads: usize, dim: usize) -> Result<String, Error> {
        let patch = self.kernel("patch_embed.proj.weight")?;
        let patches = self.conv(x, "patch_embed.proj", patch, 0)?;
        // [b, d, gh, gw] → [b, gh·gw, d]
        let flat_shape = self.ints(&[0, dim as i64, -1], false);
        let flat = self.node("Reshape", &[&patches, &flat_shape], vec![]);
        let tokens = self.node(
            "Transpose",
            &[&flat],
            vec![Attr::Ints("perm", vec![0, 2, 1])],
        );
        let batch = self.node(
            "Shape",
            &[&tokens],
            vec![Attr::Int("start", 0), Attr::Int("end", 1)],
        );
        let rest = self.ints(&[1, dim as i64], false);
        let cls_shape = self.node("Concat", &[&batch, &rest], vec![Attr::Int("axis", 0)]);
        let (cls, _) = self.weight("cls_token")?;
        let cls = self.node("Expand", &[&cls, &cls_shape], vec![]);
        let tokens = self.node("Concat", &[&cls, &tokens], vec![Attr::Int("axis", 1)]);
        let (pos, _) = self.weight("pos_embed")?;
        let mut x = self.node("Add", &[&tokens, &pos], vec![]);
        let mut i = 0;
        while self.has(&format!("blocks.{i}.norm1.weight")) {
            x = self.vit_block(&x, &format!("blocks.{i}"), heads, dim)?;
            i += 1;
        }
        let x = self.layer_norm(&x, "norm")?;
        let first = self.ints(&[0], true);
        Ok(self.node("Gather", &[&x, &first], vec![Attr::Int("axis", 1)]))
    }

    /// `x + proj(attention(norm1(x)))`, then `x + fc2(gelu(fc1(norm2(x))))`.
    fn vit_block(
        &mut self,
        x: &str,
        prefix: &str,
        heads: usize,
        dim: usize,
    ) -> Result<String, Error> {
        let normed = self.layer_norm(x, &format!("{prefix}.norm1"))?;
        let attended = self.attention(&normed, &format!("{prefix}.attn"), heads, dim)?;
        let x = self.node("Add", &[x, &attended], vec![]);
        let normed = self.layer_norm(&x, &format!("{prefix}.norm2"))?;
        let hidden = self.linear(&normed, &format!("{prefix}.mlp.fc1"))?;
        let hidden = self.gelu(&hidden);
        let out = self.linear(&hidden, &format!("{prefix}.mlp.fc2"))?;
        Ok(self.node("Add", &[&x, &out], vec![]))
    }

    /// Multi-head self-attention `prefix` over `x` `[b, t, dim]`: one `qkv` linear layer split
    /// as timm's (`[b, t, 3, heads, dim/heads]`), softmax(q kᵀ / sqrt(dim/heads)) v, `proj`.
    fn attention(
        &mut self,
        x: &str,
        prefix: &str,
        heads: usize,
        dim: usize,
    ) -> Result<String, Error> {
        let head_dim = dim / heads;
        let qkv = self.linear(x, &format!("{prefix}.qkv"))?;
        let split = self.ints(&[0, 0, 3, heads as i64, head_dim as i64], false);
        let qkv = self.node("Reshape", &[&qkv, &split], vec![]);
        // [3, b, heads, t, head_dim]
        let qkv = self.node(
            "Transpose",
            &[&qkv],
            vec![Attr::Ints("perm", vec![2, 0, 3, 1, 4])],
        );
        let [q, k, v] = [0, 1, 2].map(|i| {
            let index = self.ints(&[i], true);
            self.node("Gather", &[&qkv, &index], vec![Attr::Int("axis", 0)])
        });
        let scale = self.floats(&[], &[1.0 / (head_dim as f32).sqrt()]);
        let q = self.node("Mul", &[&q, &scale], vec![]);
        let kt = self.node(
            "Transpose",
            &[&k],
            vec![Attr::Ints("perm", vec![0, 1, 3, 2])],
        );
        let scores = self.node("MatMul", &[&q, &kt], vec![]);
        let weights = self.node("Softmax", &[&scores], vec![Attr::Int("axis", -1)]);
        let out = self.node("MatMul", &[&weights, &v], vec![]);
        // [b, heads, t, head_dim] → [b, t, dim]
        let out = self.node(
            "Transpose",
            &[&out],
            vec![Attr::Ints("perm", vec![0, 2, 1, 3])],
        );
        let merged = self.ints(&[0, 0, dim as i64], false);
        let out = self.node("Reshape", &[&out, &merged], vec![]);
        self.linear(&out, &format!("{prefix}.proj"))
    }

    /// Linear layer `prefix`: `x · weightᵀ + bias`, the weight kept `[out, in]` as PyTorch's.
    fn linear(&mut self, x: &str, prefix: &str) -> Result<String, Error> {
        let (weight, _) = self.weight(&format!("{prefix}.weight"))?;
        let (bias, _) = self.weight(&format!("{prefix}.bias"))?;
        let wt = self.node(
            "Transpose",
            &[&weight],
            vec![Attr::Ints("perm", vec![1, 0])],
        );
        let y = self.node("MatMul", &[x, &wt], vec![]);
        Ok(self.node("Add", &[&y, &bias], vec![]))
    }

    /// LayerNorm `prefix` over the last axis (timm's epsilon).
    fn layer_norm(&mut self, x: &str, prefix: &str) -> Result<String, Error> {
        let (scale, _) = self.weight(&format!("{prefix}.weight"))?;
        let (bias, _) = self.weight(&format!("{prefix}.bias"))?;
        let attrs = vec![
            Attr::Int("axis", -1),
            Attr::Float("epsilon", crate::models::vit::LAYER_NORM_EPSILON as f32),
        ];
        Ok(self.node("LayerNormalization", &[x, &scale, &bias], attrs))
    }

    /// The exact GELU: `0.5 · x · (1 + erf(x / √2))`.
    fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.floats(&[], &[std::f32::consts::SQRT_2]);
        let one = self.floats(&[], &[1.0]);
        let half = self.floats(&[], &[0.5]);
        let scaled = self.node("Div", &[x, &sqrt2], vec![]);
        let erf = self.node("Erf", &[&scaled], vec![]);
        let plus = self.node("Add", &[&erf, &one], vec![]);
        let y = self.node("Mul", &[x, &plus], vec![]);
        self.node("Mul", &[&y, &half], vec![])
    }
}
