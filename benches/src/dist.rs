//! Key choice: uniform, or zipfian (a few hot products get most of the traffic, as in a real shop).

use rand::Rng;

/// A zipfian distribution over ranks `0..n` with exponent `s`, sampled by binary search in its CDF.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` ≥ 1 ranks; rank 0 is the most frequent. Empty input gives a one-rank distribution.
    pub fn new(n: usize, s: f64) -> Zipf {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for rank in 1..=n {
            acc += 1.0 / (rank as f64).powf(s);
            cdf.push(acc);
        }
        for v in &mut cdf {
            *v /= acc;
        }
        Zipf { cdf }
    }

    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// How a browse worker picks the product it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDist {
    Uniform,
    Zipf,
}
