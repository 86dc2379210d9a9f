//! hands-train: the mathematics of training hands' networks, shared by the architecture
//! search and the training of the networks it finds. The optimizers with PyTorch's update
//! rules and their fixed variable order ([`optim`]), the (weighted) cross-entropy and one
//! training step with drop path, the auxiliary head and gradient clipping ([`step`]), and
//! mixup ([`mixup`]).

pub mod mixup;
pub mod optim;
pub mod step;
