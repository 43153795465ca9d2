//! The numeric kernels of the encoder: matrix products on the `gemm` crate,
//! and the row-wise layer norm, softmax and GELU, written so that the
//! compiler vectorises them.
//!
//! Elementwise loops are compiled twice: once for the baseline target and
//! once with AVX2 and FMA, chosen at run time when the CPU has them. `exp`
//! and `erf` are computed here by polynomials rather than through libm,
//! whose calls would keep those loops scalar; both are accurate to a few
//! units in the last place of an `f32`, well below what changes a vector.
//!
//! This is the one module of grounded with unsafe code: the call into
//! `gemm`, whose views are bounds-checked first, and the calls of the AVX2
//! copies, made only after the CPU was found to have AVX2 and FMA.
#![allow(unsafe_code)]

use gemm::Parallelism;

/// A matrix view over a slice: element (r, c) is `data[r * row_stride + c *
/// col_stride]`. A transposed view is the same data with the strides swapped.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// A mutable matrix view; see [`MatRef`].
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows` x `cols` matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of the row-major `rows` x `cols` matrix in `data`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    fn assert_in_bounds(&self) {
        assert!(fits(
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride
        ));
    }
}

impl<'a> MatMut<'a> {
    /// A row-major `rows` x `cols` matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    fn assert_in_bounds(&self) {
        assert!(fits(
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride
        ));
    }
}

/// Whether the last element of the view lies inside a slice of `len`.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + (cols - 1) * col_stride < len
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, on the
/// calling thread, or on `threads` threads of the current rayon pool.
///
/// # Panics
/// When the shapes do not agree or a view reaches past its slice.
pub(crate) fn matmul(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions differ");
    assert_eq!((dst.rows, dst.cols), (lhs.rows, rhs.cols), "output shape");
    dst.assert_in_bounds();
    lhs.assert_in_bounds();
    rhs.assert_in_bounds();
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }

    // SAFETY: every view was checked to lie inside its slice, `dst` is a
    // unique borrow that overlaps neither input, and the strides fit in
    // `isize` because they index allocated slices.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data.as_mut_ptr(),
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if threads > 1 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            },
        );
    }
}

/// Compiles `$generic` a second time with AVX2 and FMA enabled and picks
/// that copy at run time where the CPU supports it.
macro_rules! dispatch {
    ($(#[$doc:meta])* pub(crate) fn $name:ident($($arg:ident: $ty:ty),*) => $generic:ident) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn wide($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU was just found to support both features.
                    unsafe { wide($($arg),*) };
                    return;
                }
            }
            $generic($($arg),*)
        }
    };
}

dispatch! {
    /// Normalises each row of `width` values in `rows` to zero mean and unit
    /// variance, then scales by `gamma` and shifts by `beta`.
    pub(crate) fn layer_norm(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32)
        => layer_norm_generic
}

dispatch! {
    /// Replaces each row of `width` values in `rows` by its softmax.
    pub(crate) fn softmax(rows: &mut [f32], width: usize) => softmax_generic
}

dispatch! {
    /// GELU in its exact form, x/2 · (1 + erf(x/√2)), in place.
    pub(crate) fn gelu(values: &mut [f32]) => gelu_generic
}

dispatch! {
    /// Adds `bias` to each row of `width` values in `rows`.
    pub(crate) fn add_bias(rows: &mut [f32], bias: &[f32]) => add_bias_generic
}

#[inline(always)]
fn layer_norm_generic(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    let scale = 1.0 / width as f32;
    for row in rows.chunks_exact_mut(width) {
        let mean = sum(row) * scale;
        let variance = sum_of_squared_deviations(row, mean) * scale;
        let inverse = 1.0 / (variance + eps).sqrt();
        for ((value, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
            *value = (*value - mean) * inverse * g + b;
        }
    }
}

#[inline(always)]
fn softmax_generic(rows: &mut [f32], width: usize) {
    for row in rows.chunks_exact_mut(width) {
        let max = max(row);
        for value in row.iter_mut() {
            *value = exp(*value - max);
        }
        let inverse = 1.0 / sum(row);
        for value in row.iter_mut() {
            *value *= inverse;
        }
    }
}

#[inline(always)]
fn gelu_generic(values: &mut [f32]) {
    for value in values.iter_mut() {
        let x = *value;
        *value = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn add_bias_generic(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (value, &b) in row.iter_mut().zip(bias) {
            *value += b;
        }
    }
}

/// Lanes of the partial sums below: enough independent accumulators for
/// the compiler to fill a vector register and hide the add latency.
const LANES: usize = 16;

#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum_of_squared_deviations(values: &[f32], mean: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += (value - mean) * (value - mean);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(value);
        }
    }
    lanes.iter().fold(tail, |a, &b| a.max(b))
}

/// e^x for x in f32's range, by 2^k · e^r with |r| ≤ ln2/2 and a degree-6
/// Taylor polynomial for e^r (relative error under 2e-7); inputs below
/// -87 give about 1.6e-38 rather than a denormal, which is zero to softmax.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer
    // without a call, for |x · log2 e| < 2^22.
    const ROUND: f32 = 12_582_912.0;

    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((k as i32 + 127) as u32) << 23);
    p * scale
}

/// erf(x): below 0.5 in magnitude by its Maclaurin series to the x^11
/// term (error under 2e-8), above by Abramowitz and Stegun's formula
/// 7.1.26 (absolute error under 1.5e-7); odd by construction. Both are
/// computed and one is chosen, so the loop stays free of branches.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    const TWO_OVER_ROOT_PI: f32 = std::f32::consts::FRAC_2_SQRT_PI;

    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let large = 1.0 - poly * exp(-a * a);

    let s = a * a;
    let series = 1.0
        + s * (-1.0 / 3.0
            + s * (1.0 / 10.0 + s * (-1.0 / 42.0 + s * (1.0 / 216.0 + s * (-1.0 / 1320.0)))));
    let small = TWO_OVER_ROOT_PI * a * series;

    let magnitude = if a < 0.5 { small } else { large };
    magnitude.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series for |x| < 3, in f64, where the series
    /// converges fast enough; 1 beyond (erf(3) = 1 - 2.2e-5).
    fn erf_reference(x: f64) -> f64 {
        if x.abs() >= 3.0 {
            return x.signum() * (1.0 - 2.209e-5);
        }
        let mut term = x;
        let mut total = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            total += term / (2 * n + 1) as f64;
        }
        total * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_matches_the_standard_library_to_a_few_ulps() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert!(exp(-1000.0) < 1e-37);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_its_stated_error_and_odd() {
        let mut x = -2.99f32;
        while x < 2.99 {
            let want = erf_reference(f64::from(x));
            let got = f64::from(erf(x));
            assert!((got - want).abs() < 4e-7, "erf({x}) = {got}, want {want}");
            assert_eq!(erf(-x), -erf(x));
            x += 0.0071;
        }
        assert!((erf(5.0) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut rows = vec![1.0, 2.0, 3.0, -1000.0, 0.5, 0.5, 0.5, 0.5];
        softmax(&mut rows, 4);
        let first: f32 = rows[..4].iter().sum();
        assert!((first - 1.0).abs() < 1e-6);
        assert!(rows[2] > rows[1] && rows[1] > rows[0] && rows[3] < 1e-30);
        let e = std::f32::consts::E;
        assert!((rows[1] / rows[0] - e).abs() < 1e-5);
        assert!(rows[4..].iter().all(|&p| (p - 0.25).abs() < 1e-7));
    }

    #[test]
    fn layer_norm_gives_zero_mean_unit_variance_before_scaling() {
        let width = 37;
        let mut rows: Vec<f32> = (0..width * 2).map(|i| (i * i % 11) as f32 - 3.0).collect();
        let gamma = vec![2.0; width];
        let beta = vec![1.0; width];
        layer_norm(&mut rows, width, &gamma, &beta, 1e-12);
        for row in rows.chunks(width) {
            let normalised: Vec<f64> = row.iter().map(|&v| (f64::from(v) - 1.0) / 2.0).collect();
            let mean = normalised.iter().sum::<f64>() / width as f64;
            let variance =
                normalised.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            assert!(
                mean.abs() < 1e-6 && (variance - 1.0).abs() < 1e-5,
                "{mean} {variance}"
            );
        }
    }

    #[test]
    fn matmul_multiplies_plain_and_transposed_views() {
        // lhs = [[1, 2], [3, 4]], rhs = [[5, 6], [7, 8]]: lhs·rhs = [[19, 22],
        // [43, 50]], lhs·rhsᵀ = [[17, 23], [39, 53]].
        let lhs = [1.0, 2.0, 3.0, 4.0];
        let rhs = [5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0; 4];
        matmul(
            MatMut::rows(&mut out, 2, 2, 2),
            MatRef::rows(&lhs, 2, 2, 2),
            MatRef::rows(&rhs, 2, 2, 2),
            false,
            1,
        );
        assert_eq!(out, [19.0, 22.0, 43.0, 50.0]);
        matmul(
            MatMut::rows(&mut out, 2, 2, 2),
            MatRef::rows(&lhs, 2, 2, 2),
            MatRef::transposed(&rhs, 2, 2, 2),
            true,
            2,
        );
        assert_eq!(out, [19.0 + 17.0, 22.0 + 23.0, 43.0 + 39.0, 50.0 + 53.0]);
    }

    #[test]
    #[should_panic(expected = "inner dimensions differ")]
    fn matmul_refuses_shapes_that_do_not_agree() {
        let a = [0.0; 6];
        let mut out = [0.0; 4];
        matmul(
            MatMut::rows(&mut out, 2, 2, 2),
            MatRef::rows(&a, 2, 3, 3),
            MatRef::rows(&a, 2, 3, 3),
            false,
            1,
        );
    }
}
