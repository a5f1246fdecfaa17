"""Task accuracy of a small transformer on gain-cell attention (`gcsim accuracy`): in-context
tasks generated on the fly, softmax training, and evaluation and adaptation through the
differentiable twin (gcsim.nn). Needs PyTorch (the `ml` extra); the submodules import it, this
package marker does not."""
