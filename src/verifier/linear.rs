//! Logistic regression over sparse rows: scoring, per-feature contributions, and fitting with
//! L-BFGS (L2 on the weights, not on the bias), the same objective as scikit-learn's
//! `LogisticRegression(C)`: `C · Σ log-loss + ½‖w‖²`.

/// A sparse row: (feature index, value), indices unique.
pub type Row = Vec<(u32, f32)>;

pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The logit of a probability, clipped away from 0 and 1.
pub fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// Weights of one logistic model.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl Linear {
    pub fn zeros(dim: usize) -> Linear {
        Linear {
            weights: vec![0.0; dim],
            bias: 0.0,
        }
    }

    pub fn z(&self, row: &[(u32, f32)]) -> f32 {
        self.bias
            + row
                .iter()
                .filter_map(|&(i, v)| self.weights.get(i as usize).map(|w| w * v))
                .sum::<f32>()
    }

    pub fn prob(&self, row: &[(u32, f32)]) -> f32 {
        sigmoid(self.z(row))
    }

    /// Each feature's share of the logit, largest magnitude first.
    pub fn contributions(&self, row: &[(u32, f32)]) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = row
            .iter()
            .filter_map(|&(i, v)| self.weights.get(i as usize).map(|w| (i, w * v)))
            .filter(|(_, c)| *c != 0.0)
            .collect();
        out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        out
    }
}

/// How hard to fit.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f32,
    pub max_iter: usize,
    /// Stop when the gradient's largest component is below this.
    pub tolerance: f32,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            c: 1.0,
            max_iter: 500,
            tolerance: 1e-4,
        }
    }
}

/// Loss and gradient of the objective at `x` (weights, then the bias last).
fn objective(rows: &[Row], y: &[bool], x: &[f64], c: f64, grad: &mut [f64]) -> f64 {
    let dim = x.len() - 1;
    let bias = x[dim];
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (row, &label) in rows.iter().zip(y) {
        let z = bias
            + row
                .iter()
                .map(|&(i, v)| x[i as usize] * v as f64)
                .sum::<f64>();
        // log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably.
        let s = if label { -z } else { z };
        loss += if s > 0.0 {
            s + (-s).exp().ln_1p()
        } else {
            s.exp().ln_1p()
        };
        let p = 1.0 / (1.0 + (-z).exp());
        let d = c * (p - if label { 1.0 } else { 0.0 });
        for &(i, v) in row {
            grad[i as usize] += d * v as f64;
        }
        grad[dim] += d;
    }
    loss *= c;
    let mut reg = 0.0;
    for i in 0..dim {
        reg += x[i] * x[i];
        grad[i] += x[i];
    }
    loss + 0.5 * reg
}

/// Fit a logistic model on `rows` (features below `dim`) and labels `y`.
pub fn fit(rows: &[Row], y: &[bool], dim: usize, opts: FitOptions) -> Linear {
    assert_eq!(rows.len(), y.len());
    let n = dim + 1;
    let c = opts.c as f64;
    let mut x = vec![0.0f64; n];
    let mut g = vec![0.0f64; n];
    let mut f = objective(rows, y, &x, c, &mut g);
    // L-BFGS with a memory of the last M steps and a backtracking (Armijo) line search.
    const M: usize = 10;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut x_new = vec![0.0f64; n];
    let mut g_new = vec![0.0f64; n];
    for _ in 0..opts.max_iter {
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gmax < opts.tolerance as f64 {
            break;
        }
        // Two-loop recursion: d = -H·g.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            axpy(-alpha[i], &y_hist[i], &mut q);
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / gmax.max(1.0)
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            axpy(alpha[i] - beta, &s_hist[i], &mut q);
        }
        let d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        let d = if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            let d: Vec<f64> = g.iter().map(|v| -v / gmax.max(1.0)).collect();
            slope = dot(&g, &d);
            d
        } else {
            d
        };
        let mut step = 1.0;
        let mut f_new;
        loop {
            for i in 0..n {
                x_new[i] = x[i] + step * d[i];
            }
            f_new = objective(rows, y, &x_new, c, &mut g_new);
            if f_new <= f + 1e-4 * step * slope || step < 1e-10 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
        let yv: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
        let improvement = f - f_new;
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        if dot(&s, &yv) > 1e-10 {
            if s_hist.len() == M {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(yv);
        }
        if improvement.abs() < 1e-9 * f.abs().max(1.0) {
            break;
        }
    }
    Linear {
        weights: x[..dim].iter().map(|&v| v as f32).collect(),
        bias: x[dim] as f32,
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_features() {
        // Feature 0 marks positives, feature 1 negatives; feature 2 is noise on both.
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let pos = i % 2 == 0;
            rows.push(vec![
                (if pos { 0 } else { 1 }, 1.0),
                (2, (i % 7) as f32 / 7.0),
            ]);
            y.push(pos);
        }
        let m = fit(&rows, &y, 3, FitOptions::default());
        assert!(m.weights[0] > 1.0 && m.weights[1] < -1.0, "{m:?}");
        assert!(m.prob(&[(0, 1.0)]) > 0.9);
        assert!(m.prob(&[(1, 1.0)]) < 0.1);
        let c = m.contributions(&[(0, 1.0), (2, 0.5)]);
        assert_eq!(c[0].0, 0);
    }

    #[test]
    fn matches_the_closed_form_of_one_feature() {
        // One binary feature, 30 % positives where it is on, 80 % where it is off, weak
        // regularisation: the fitted probabilities approach the observed rates.
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..1000 {
            let on = i < 500;
            rows.push(if on { vec![(0, 1.0)] } else { vec![] });
            let k = i % 10;
            y.push(if on { k < 3 } else { k < 8 });
        }
        let m = fit(
            &rows,
            &y,
            1,
            FitOptions {
                c: 1000.0,
                ..FitOptions::default()
            },
        );
        assert!((m.prob(&[(0, 1.0)]) - 0.3).abs() < 0.01, "{m:?}");
        assert!((m.prob(&[]) - 0.8).abs() < 0.01, "{m:?}");
    }

    #[test]
    fn stable_at_extreme_logits() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(logit(0.0).is_finite() && logit(1.0).is_finite());
    }
}
