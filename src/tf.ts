/**
 * The TensorFlow.js namespace nf computes with, set once by the engine.
 * Model code imports `tf` from here (a live binding) so it never loads tfjs itself:
 * commands that need no tensors never pay for loading it.
 */
import type * as TF from '@tensorflow/tfjs-core';

export type Tf = typeof TF;
export type { Tensor, Tensor1D, Tensor2D, Scalar, Variable } from '@tensorflow/tfjs-core';

// eslint-disable-next-line import/no-mutable-exports
export let tf: Tf;

export function setTf(namespace: Tf): void {
  tf = namespace;
}
