//! Folding eval-mode batch normalisation into the convolution before it.
//!
//! In eval mode BN is the per-channel affine map `y = x * s + t` with
//! `s = gamma / sqrt(running_var + eps)` and `t = beta - running_mean * s`
//! (`gamma = 1`, `beta = 0` when BN is not affine). A convolution `W * x + b` followed by BN
//! becomes the convolution `(W * s) * x + (b * s + t)`, scaling output channel `o` of `W`.
//!
//! Where the BN follows a concatenation of convolutions (FactorizedReduce: two 1x1 stride-2
//! convolutions concatenated along channels, then BN), the BN's channels are split in the
//! concat's order and each part is folded into the convolution that produced it. A BN with
//! no convolution before it (a pooling op followed by BN, as in the search supernet) has no
//! weights to fold into; it becomes a per-channel `Mul` + `Add` in the graph from
//! [`BnAffine::scale_shift`]. The discrete network has no such BN.
//!
//! The arithmetic runs in f64 and the result is rounded once to f32, so the folded
//! network differs from the unfolded one only by f32 rounding of the convolution sums
//! (measured well under 1e-5 on logits; the test below asserts 1e-5 at 1e-5 relative scale).

use candle_core::{DType, Tensor};

use candle_core::Result;

/// The eval-mode parameters of one BatchNorm layer.
#[derive(Debug, Clone)]
pub struct BnAffine {
    /// `gamma`, or `None` for a non-affine BN.
    pub weight: Option<Tensor>,
    /// `beta`, or `None` for a non-affine BN.
    pub bias: Option<Tensor>,
    /// Running mean.
    pub running_mean: Tensor,
    /// Running variance.
    pub running_var: Tensor,
    /// The variance epsilon.
    pub eps: f64,
}

impl BnAffine {
    /// Reads the parameters of a candle-nn BatchNorm.
    pub fn from_candle(bn: &candle_nn::BatchNorm) -> BnAffine {
        let (weight, bias) = match bn.weight_and_bias() {
            Some((w, b)) => (Some(w.clone()), Some(b.clone())),
            None => (None, None),
        };
        BnAffine {
            weight,
            bias,
            running_mean: bn.running_mean().clone(),
            running_var: bn.running_var().clone(),
            eps: bn.eps(),
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> Result<usize> {
        self.running_mean.dims1()
    }

    /// The per-channel `(scale, shift)` of the eval-mode map `y = x * scale + shift`, in f64.
    pub fn scale_shift_f64(&self) -> Result<(Tensor, Tensor)> {
        let mean = self.running_mean.to_dtype(DType::F64)?;
        let var = self.running_var.to_dtype(DType::F64)?;
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        let scale = match &self.weight {
            Some(w) => w.to_dtype(DType::F64)?.mul(&inv_std)?,
            None => inv_std,
        };
        let shift = mean.mul(&scale)?.neg()?;
        let shift = match &self.bias {
            Some(b) => shift.add(&b.to_dtype(DType::F64)?)?,
            None => shift,
        };
        Ok((scale, shift))
    }

    /// The per-channel `(scale, shift)` as f32 vectors, for a BN that has no convolution to
    /// fold into (lowered as `Mul` then `Add`).
    pub fn scale_shift(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let (s, t) = self.scale_shift_f64()?;
        Ok((
            s.to_dtype(DType::F32)?.to_vec1()?,
            t.to_dtype(DType::F32)?.to_vec1()?,
        ))
    }

    /// The BN restricted to channels `start..start + len` (for a BN after a concat).
    pub fn narrow(&self, start: usize, len: usize) -> Result<BnAffine> {
        let n = |t: &Tensor| t.narrow(0, start, len);
        Ok(BnAffine {
            weight: self.weight.as_ref().map(n).transpose()?,
            bias: self.bias.as_ref().map(n).transpose()?,
            running_mean: n(&self.running_mean)?,
            running_var: n(&self.running_var)?,
            eps: self.eps,
        })
    }
}

/// A convolution with its bias, after folding.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    /// `[out, in / groups, kh, kw]` weight, f32.
    pub weight: Tensor,
    /// `[out]` bias, f32.
    pub bias: Tensor,
}

/// Folds `bn` into the convolution `weight` (`[out, in/groups, kh, kw]`) with optional `bias`.
pub fn fold_conv(weight: &Tensor, bias: Option<&Tensor>, bn: &BnAffine) -> Result<FoldedConv> {
    let out = weight.dim(0)?;
    let channels = bn.channels()?;
    if channels != out {
        candle_core::bail!("BN has {channels} channels, the convolution before it has {out}");
    }
    let (scale, shift) = bn.scale_shift_f64()?;
    let w = weight
        .to_dtype(DType::F64)?
        .broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
    let b = match bias {
        Some(b) => b.to_dtype(DType::F64)?.mul(&scale)?.add(&shift)?,
        None => shift,
    };
    Ok(FoldedConv {
        weight: w.to_dtype(DType::F32)?,
        bias: b.to_dtype(DType::F32)?,
    })
}

/// Folds a BN that follows the channel concatenation of several convolutions: part `i` of
/// the BN (channels in concat order) goes into `convs[i]`.
pub fn fold_concat(convs: &[(&Tensor, Option<&Tensor>)], bn: &BnAffine) -> Result<Vec<FoldedConv>> {
    let total: usize = convs
        .iter()
        .map(|(w, _)| w.dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?
        .into_iter()
        .sum();
    if total != bn.channels()? {
        candle_core::bail!(
            "BN has {} channels, the concatenated convolutions {total}",
            bn.channels()?
        );
    }
    let mut start = 0;
    let mut folded = Vec::with_capacity(convs.len());
    for (w, b) in convs {
        let len = w.dim(0)?;
        folded.push(fold_conv(w, *b, &bn.narrow(start, len)?)?);
        start += len;
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, ModuleT};
    use candle_nn::{BatchNorm, Conv2d, Conv2dConfig};

    use super::*;
    use hands_tests::{max_abs_diff, SeededTensors};

    fn bn(c: usize, affine: bool, random: &mut SeededTensors) -> BatchNorm {
        let mean = random.normal(0.0, 1.0, c);
        let var = random.uniform(0.2, 2.0, c);
        if affine {
            let w = random.normal(1.0, 0.5, c);
            let b = random.normal(0.0, 0.5, c);
            BatchNorm::new(c, mean, var, w, b, 1e-5).unwrap()
        } else {
            BatchNorm::new_no_bias(c, mean, var, 1e-5).unwrap()
        }
    }

    /// Folding leaves the conv+BN output unchanged to 1e-5 (inputs and weights ~N(0, 1)).
    #[test]
    fn folded_conv_matches_conv_then_bn() {
        let mut random = SeededTensors::new(0);
        let x = random.normal(0.0, 1.0, (2, 6, 9, 9));
        for (groups, dilation, with_bias, affine) in [
            (1, 1, false, true),
            (6, 2, false, true),
            (1, 1, true, false),
            (3, 1, true, true),
        ] {
            let cfg = Conv2dConfig {
                padding: dilation,
                stride: 1,
                dilation,
                groups,
                ..Default::default()
            };
            let w = random.normal(0.0, 0.3, (6, 6 / groups, 3, 3));
            let b = with_bias.then(|| random.normal(0.0, 1.0, 6));
            let conv = Conv2d::new(w.clone(), b.clone(), cfg);
            let norm = bn(6, affine, &mut random);
            let expected = norm.forward_t(&conv.forward(&x).unwrap(), false).unwrap();
            let f = fold_conv(&w, b.as_ref(), &BnAffine::from_candle(&norm)).unwrap();
            let folded = Conv2d::new(f.weight, Some(f.bias), cfg)
                .forward(&x)
                .unwrap();
            let d = max_abs_diff(&expected, &folded);
            assert!(d < 1e-5, "groups {groups} dilation {dilation}: {d}");
        }
    }

    #[test]
    fn folding_into_a_concat_splits_the_channels() {
        let mut random = SeededTensors::new(1);
        let x = random.normal(0.0, 1.0, (2, 4, 8, 8));
        let cfg = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let w1 = random.normal(0.0, 0.5, (3, 4, 1, 1));
        let w2 = random.normal(0.0, 0.5, (5, 4, 1, 1));
        let norm = bn(8, true, &mut random);
        let y1 = Conv2d::new(w1.clone(), None, cfg).forward(&x).unwrap();
        let y2 = Conv2d::new(w2.clone(), None, cfg).forward(&x).unwrap();
        let expected = norm
            .forward_t(&Tensor::cat(&[&y1, &y2], 1).unwrap(), false)
            .unwrap();
        let f = fold_concat(&[(&w1, None), (&w2, None)], &BnAffine::from_candle(&norm)).unwrap();
        let parts: Vec<Tensor> = f
            .into_iter()
            .map(|c| {
                Conv2d::new(c.weight, Some(c.bias), cfg)
                    .forward(&x)
                    .unwrap()
            })
            .collect();
        let folded = Tensor::cat(&parts, 1).unwrap();
        assert!(max_abs_diff(&expected, &folded) < 1e-5);
    }

    #[test]
    fn scale_shift_reproduces_a_bn_without_conv() {
        let dev = Device::Cpu;
        let mut random = SeededTensors::new(2);
        let x = random.normal(0.0, 1.0, (2, 5, 4, 4));
        let norm = bn(5, false, &mut random);
        let expected = norm.forward_t(&x, false).unwrap();
        let (s, t) = BnAffine::from_candle(&norm).scale_shift().unwrap();
        let s = Tensor::new(s, &dev).unwrap().reshape((1, 5, 1, 1)).unwrap();
        let t = Tensor::new(t, &dev).unwrap().reshape((1, 5, 1, 1)).unwrap();
        let got = x.broadcast_mul(&s).unwrap().broadcast_add(&t).unwrap();
        assert!(max_abs_diff(&expected, &got) < 1e-5);
    }

    #[test]
    fn channel_mismatch_is_refused() {
        let w = Tensor::zeros((4, 2, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let norm = bn(3, true, &mut SeededTensors::new(3));
        let err = fold_conv(&w, None, &BnAffine::from_candle(&norm)).unwrap_err();
        assert!(err.to_string().contains("3 channels"));
    }
}
