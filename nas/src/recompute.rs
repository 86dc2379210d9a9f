//! Activation recomputation: a batch's loss and gradients with at most one cell's graph alive
//! at a time, for searches whose memory, not their time, decides the batch and the depth that
//! fit.
//!
//! The forward pass keeps only each cell's output (a leaf copy) and the small graphs of the
//! stem and the classifier; every cell's own graph is dropped as soon as its output is
//! copied. The backward pass then goes through the cells last to first: it recomputes a cell
//! from its two kept inputs and back-propagates through that cell alone, seeded with the
//! gradient its output received from the classifier or the cells after it, as
//! `torch.utils.checkpoint` does per segment. The gradients are those of one backward pass
//! through the whole graph; only the order of some floating-point sums differs. The price is
//! one more forward pass through the cells.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::supernet::{SkipDropout, SkipMasks, Supernet};

/// The gradients of every variable of `net` for the loss that `head` makes of `net`'s logits
/// for `images`, with what else `head` returns; the cells are recomputed one at a time in the
/// backward pass, each with the skip-connect dropout masks (P-DARTS) that the forward pass
/// drew for it. `head` runs before any gradient is taken (it may refuse the loss).
pub fn loss_and_grads<T>(
    net: &Supernet,
    images: &Tensor,
    drop_skip: Option<SkipDropout<'_>>,
    head: impl FnOnce(&Tensor) -> Result<(Tensor, T)>,
) -> Result<(T, GradStore)> {
    let mut dropout = drop_skip.filter(|dropout| dropout.prob > 0.0);
    let mixes = net.mixes()?;
    let stem = net.stem(images)?;
    let cells = net.cell_count();
    // states[0]: the stem's output; states[k + 1]: cell k's output; masks[k]: cell k's.
    let mut states: Vec<Option<Var>> = Vec::with_capacity(cells + 1);
    let mut masks: Vec<Vec<Tensor>> = vec![Vec::new(); cells];
    states.push(Some(Var::from_tensor(&stem)?));
    for (cell, drawn) in masks.iter_mut().enumerate() {
        let (s0, s1) = inputs(&states, cell);
        let mut draw = dropout.as_mut().map(|dropout| SkipMasks::Draw {
            dropout,
            drawn: Some(drawn),
        });
        let output = net.cell(cell, (s0.as_tensor(), s1.as_tensor()), &mixes, &mut draw)?;
        states.push(Some(Var::from_tensor(&output)?));
    }

    let last = states[cells]
        .take()
        .expect("the last cell's output is kept");
    let (loss, other) = head(&net.classify(last.as_tensor())?)?;
    let mut grads = detached(loss.backward()?);
    let mut seeds: Vec<Option<Tensor>> = vec![None; cells + 1];
    seeds[cells] = grads.remove(last.as_tensor());

    for cell in (0..cells).rev() {
        let Some(seed) = seeds[cell + 1].take() else {
            continue;
        };
        let (s0, s1) = inputs(&states, cell);
        let mut replay = dropout
            .is_some()
            .then(|| SkipMasks::Replay(masks[cell].iter()));
        let output = net.cell(cell, (s0.as_tensor(), s1.as_tensor()), &mixes, &mut replay)?;
        let mut cell_grads = detached((output * seed)?.sum_all()?.backward()?);
        let (from0, from1) = input_states(cell);
        add(&mut seeds[from0], cell_grads.remove(s0.as_tensor()))?;
        if from1 != from0 {
            add(&mut seeds[from1], cell_grads.remove(s1.as_tensor()))?;
        }
        grads.extend(cell_grads)?;
        // Cell `cell`'s output fed the cells after it, all of them recomputed by now.
        states[cell + 1] = None;
        masks[cell] = Vec::new();
    }
    if let Some(seed) = seeds[0].take() {
        grads.extend(detached((stem * seed)?.sum_all()?.backward()?))?;
    }
    Ok((other, grads))
}

/// Which kept states feed `cell`: the outputs of the two cells before it, the stem's standing
/// in for those before the first.
fn input_states(cell: usize) -> (usize, usize) {
    (cell.saturating_sub(1), cell)
}

fn inputs(states: &[Option<Var>], cell: usize) -> (Var, Var) {
    let (from0, from1) = input_states(cell);
    let state = |i: usize| {
        states[i]
            .clone()
            .expect("a cell's inputs are kept until it is done")
    };
    (state(from0), state(from1))
}

/// Adds `grad` (when there is one) to the gradient kept in `slot`.
fn add(slot: &mut Option<Tensor>, grad: Option<Tensor>) -> Result<()> {
    if let Some(grad) = grad {
        *slot = Some(match slot.take() {
            Some(sum) => (sum + grad)?,
            None => grad,
        });
    }
    Ok(())
}

/// `grads` without their own graphs. A gradient that candle's backward pass stores for a
/// variable is a product of the forward pass's activations (for example `grad * rhs` for a
/// multiplication), and so keeps the whole graph of that pass alive for as long as the
/// gradient lives; detached, it holds only its values.
pub fn detached(mut grads: GradStore) -> GradStore {
    let ids: Vec<_> = grads.get_ids().copied().collect();
    for id in ids {
        if let Some(grad) = grads.get_id(id).map(Tensor::detach) {
            grads.insert_id(id, grad);
        }
    }
    grads
}
