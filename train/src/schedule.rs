//! Per-epoch schedules: the cosine learning rate and linear ramps (drop-path probability).

/// The learning rate of `epoch` (0-based) under cosine annealing from `lr_max` to `lr_min`
/// over `epochs`, as `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs,
/// eta_min=lr_min)` stepped once per epoch:
///
/// `lr_min + (lr_max - lr_min) * (1 + cos(pi * epoch / epochs)) / 2`.
///
/// Epoch 0 runs at `lr_max`; the last epoch (`epochs - 1`) stays just above `lr_min`.
pub fn cosine_lr(epoch: usize, epochs: usize, lr_max: f64, lr_min: f64) -> f64 {
    if epochs == 0 {
        return lr_max;
    }
    let t = epoch as f64 / epochs as f64;
    lr_min + (lr_max - lr_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
}

/// A value ramped linearly from 0 at epoch 0 to `max * (epochs - 1) / epochs` at the last
/// epoch, as DARTS' `drop_path_prob = drop_path * epoch / epochs`.
pub fn linear_ramp(epoch: usize, epochs: usize, max: f64) -> f64 {
    if epochs == 0 {
        return 0.0;
    }
    max * epoch as f64 / epochs as f64
}

/// The Beta-Decay weight (`crate::architect::add_beta_decay`) at `epoch` of a stage of
/// `epochs` whose first `warmup` epochs have no architecture step: 0 there and at the first
/// architecture epoch, then rising linearly to `final_weight` at the last one (our schedule:
/// β-DARTS lets its weight grow through the search). A stage with a single architecture
/// epoch has none.
pub fn beta_decay_weight(final_weight: f64, epoch: usize, epochs: usize, warmup: usize) -> f64 {
    if epoch < warmup {
        return 0.0;
    }
    let arch_epochs = epochs.saturating_sub(warmup);
    if arch_epochs < 2 {
        return 0.0;
    }
    final_weight * (epoch - warmup) as f64 / (arch_epochs - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_matches_torch_closed_form() {
        // CosineAnnealingLR(T_max=4, eta_min=0.001) from 0.025 gives, per epoch:
        let expected = [0.025, 0.021485281374238572, 0.013, 0.004514718625761431];
        for (e, want) in expected.iter().enumerate() {
            assert!(
                (cosine_lr(e, 4, 0.025, 0.001) - want).abs() < 1e-15,
                "epoch {e}"
            );
        }
        assert!((cosine_lr(4, 4, 0.025, 0.001) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn ramp_is_linear_from_zero() {
        assert_eq!(linear_ramp(0, 10, 0.2), 0.0);
        assert!((linear_ramp(5, 10, 0.2) - 0.1).abs() < 1e-15);
        assert!((linear_ramp(9, 10, 0.2) - 0.18).abs() < 1e-15);
        assert_eq!(linear_ramp(3, 0, 0.2), 0.0);
    }
}
