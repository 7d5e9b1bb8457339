//! Small numeric helpers: normal quantiles, medians, robust scale.

/// The standard normal quantile `Φ⁻¹(p)` for `p` in `(0, 1)`.
///
/// Acklam's rational approximation refined by one Halley step on an
/// `erfc` with relative error below 1e-15, so the result agrees with
/// `scipy.stats.norm.ppf` to about 1e-12.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let x = if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step: e = Φ(x) − p.
    let e = 0.5 * erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Complementary error function (W. J. Cody's rational approximations,
/// relative error below 1e-15 over the real line).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 0.5 {
        return 1.0 - erf_small(x);
    }
    if x > 27.0 {
        return 0.0;
    }
    let (p, q): (&[f64], &[f64]) = if x < 4.0 {
        (
            &[
                5.641_884_969_886_701e-1,
                8.883_149_794_388_376,
                6.611_919_063_714_163e1,
                2.986_351_381_974_001e2,
                8.819_522_212_417_69e2,
                1.712_047_612_634_071e3,
                2.051_078_377_826_071e3,
                1.230_339_354_797_997e3,
                2.153_115_354_744_038e-8,
            ],
            &[
                1.574_492_611_070_983e1,
                1.176_939_508_913_125e2,
                5.371_811_018_620_099e2,
                1.621_389_574_566_69e3,
                3.290_799_235_733_46e3,
                4.362_619_090_143_247e3,
                3.439_367_674_143_722e3,
                1.230_339_354_803_749e3,
            ],
        )
    } else {
        let z = 1.0 / (x * x);
        let p = [
            3.053_266_349_612_323e-1,
            3.603_448_999_498_044e-1,
            1.257_817_261_112_292e-1,
            1.608_378_514_874_228e-2,
            6.587_491_615_298_378e-4,
            1.631_538_713_730_71e-2,
        ];
        let q = [
            2.568_520_192_289_822,
            1.872_952_849_923_46,
            5.279_051_029_514_285e-1,
            6.051_834_131_244_132e-2,
            2.335_204_976_268_692e-3,
        ];
        let num = ((((p[5] * z + p[0]) * z + p[1]) * z + p[2]) * z + p[3]) * z + p[4];
        let den = ((((z + q[0]) * z + q[1]) * z + q[2]) * z + q[3]) * z + q[4];
        let r = (1.0 / std::f64::consts::PI.sqrt() - z * num / den) / x;
        return r * (-x * x).exp();
    };
    let mut num = p[8] * x;
    let mut den = x;
    for i in 0..7 {
        num = (num + p[i]) * x;
        den = (den + q[i]) * x;
    }
    ((num + p[7]) / (den + q[7])) * (-x * x).exp()
}

fn erf_small(x: f64) -> f64 {
    let a = [
        3.161_123_743_870_566,
        1.138_641_541_510_502e2,
        3.774_852_376_853_02e2,
        3.209_377_589_138_469e3,
        1.857_777_061_846_032e-1,
    ];
    let b = [
        2.360_129_095_234_412e1,
        2.440_246_379_344_442e2,
        1.282_616_526_077_372e3,
        2.844_236_833_439_171e3,
    ];
    let z = x * x;
    let mut num = a[4] * z;
    let mut den = z;
    for i in 0..3 {
        num = (num + a[i]) * z;
        den = (den + b[i]) * z;
    }
    x * (num + a[3]) / (den + b[3])
}

/// Median of `v` (reorders it). `NaN`-free input assumed.
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    if let Ok(v) = <&mut [f64; 6]>::try_from(&mut *v) {
        // The default rolling window (three neighbours each side): a
        // branch-free sorting network (Knuth's 12 comparators).
        let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5] = *v;
        cx(&mut a0, &mut a5);
        cx(&mut a1, &mut a3);
        cx(&mut a2, &mut a4);
        cx(&mut a1, &mut a2);
        cx(&mut a3, &mut a4);
        cx(&mut a0, &mut a3);
        cx(&mut a2, &mut a5);
        cx(&mut a0, &mut a1);
        cx(&mut a2, &mut a3);
        cx(&mut a4, &mut a5);
        cx(&mut a1, &mut a2);
        cx(&mut a3, &mut a4);
        *v = [a0, a1, a2, a3, a4, a5];
        return (v[2] + v[3]) / 2.0;
    }
    if n <= 16 {
        // Rolling windows are a handful of values: an insertion sort beats
        // a general selection.
        for i in 1..n {
            let mut j = i;
            while j > 0 && v[j - 1].total_cmp(&v[j]).is_gt() {
                v.swap(j - 1, j);
                j -= 1;
            }
        }
        return if n % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
    }
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        upper
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// Compare-exchange in the total order: afterwards `a ≤ b`.
#[inline(always)]
fn cx(a: &mut f64, b: &mut f64) {
    let (x, y) = (*a, *b);
    let swap = x.total_cmp(&y).is_gt();
    *a = if swap { y } else { x };
    *b = if swap { x } else { y };
}

/// Least-squares slope of `values` against their index.
pub(crate) fn index_slope(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if values.len() < 2 {
        return 0.0;
    }
    let c = (n - 1.0) / 2.0;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    let mean = values.iter().sum::<f64>() / n;
    for (i, v) in values.iter().enumerate() {
        let x = i as f64 - c;
        sxy += x * (v - mean);
        sxx += x * x;
    }
    sxy / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_scipy() {
        // scipy.stats.norm.ppf values.
        let cases = [
            (0.975, 1.959_963_984_540_054),
            (0.5, 0.0),
            (0.9, 1.281_551_565_544_600_4),
            (0.01, -2.326_347_874_040_841),
            (0.999, 3.090_232_306_167_813_6),
        ];
        for (p, z) in cases {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-12,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }

    #[test]
    fn median_and_slope() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        // Every ordering of six values (the sorting-network path).
        let mut perm = [6.0, 1.0, 5.0, 2.0, 4.0, 3.0];
        for k in 0..720 {
            perm.swap(k % 6, (k * 7 + 3) % 6);
            let mut w = perm;
            assert_eq!(median_in_place(&mut w), 3.5, "{perm:?}");
            assert!(w.is_sorted());
        }
        assert!((index_slope(&[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-15);
    }
}
