// A banana-shaped 2-D density for `nf fit --target`:
//   x1 ~ N(0, 2²),  x2 | x1 ~ N(0.25·x1² − 1, 0.5²)
// given unnormalised. The map (x1, x2) → (x1, x2 − 0.25·x1²) has unit Jacobian, so the
// normaliser of exp(logProb) is exactly Z = 2π·2·0.5 = 2π, log Z = 1.8378771.
export const dim = 2;
export const columns = ['x1', 'x2'];
export const logZ = Math.log(2 * Math.PI);

/** x: [batch, 2] tensor; tf: nf's TensorFlow.js namespace. Returns [batch]. */
export function logProb(x, tf) {
  const [x1, x2] = tf.split(x, 2, 1);
  const a = tf.div(x1, 2);
  const b = tf.div(tf.sub(x2, tf.sub(tf.mul(tf.square(x1), 0.25), 1)), 0.5);
  return tf.reshape(tf.mul(tf.add(tf.square(a), tf.square(b)), -0.5), [-1]);
}
