// A multimodal 2-D target for `nf fit --target`: six Gaussians (σ = 0.4) evenly spaced on a
// circle of radius 3, equal weights, given up to a constant. Reverse KL is prone to
// dropping modes on targets like this; nf reports the effective sample size to show it.
// Unnormalised as written: Z = 6 · 2π·0.4², log Z = 1.8091.
export const dim = 2;
export const logZ = Math.log(6 * 2 * Math.PI * 0.16);

const K = 6;
const R = 3;
const SIGMA = 0.4;

export function logProb(x, tf) {
  const centers = [];
  for (let k = 0; k < K; k++) centers.push([R * Math.cos((2 * Math.PI * k) / K), R * Math.sin((2 * Math.PI * k) / K)]);
  const c = tf.tensor2d(centers); // [K, 2]
  // Squared distances [batch, K] = |x|² − 2 x·c + |c|²
  const d2 = tf.add(tf.sub(tf.sum(tf.square(x), 1, true), tf.mul(tf.matMul(x, c, false, true), 2)), tf.sum(tf.square(c), 1));
  return tf.logSumExp(tf.div(d2, -2 * SIGMA * SIGMA), 1);
}
