//! Huffman codes for deflate's dynamic blocks (RFC 1951, 3.2.2 and 3.2.7): code lengths under
//! a limit, their canonical codes, and the run-length form a block's header sends them in.

/// Makes sure two symbols have a code: a one-symbol code trips some inflaters.
pub(super) fn at_least_two(freq: &mut [u32]) {
    let used = freq.iter().filter(|&&f| f > 0).count();
    let missing = 2usize.saturating_sub(used);
    for f in freq.iter_mut().filter(|f| **f == 0).take(missing) {
        *f = 1;
    }
}

/// Huffman code lengths for `freq`, none longer than `limit`: the optimal lengths
/// (Moffat and Katajainen's in-place algorithm), then the longest folded under the limit
/// as zlib and miniz do, the shortest codes to the most frequent symbols.
pub(super) fn code_lengths(freq: &[u32], limit: usize) -> Vec<u8> {
    let mut syms: Vec<(u32, usize)> = freq
        .iter()
        .enumerate()
        .filter(|(_, f)| **f > 0)
        .map(|(s, f)| (*f, s))
        .collect();
    syms.sort_unstable();
    let mut a: Vec<u32> = syms.iter().map(|s| s.0).collect();
    minimum_redundancy(&mut a);
    let mut count = [0u32; 64];
    for &d in &a {
        count[(d as usize).min(63)] += 1;
    }
    for d in limit + 1..64 {
        count[limit] += count[d];
        count[d] = 0;
    }
    let mut kraft: u64 = (1..=limit)
        .map(|d| u64::from(count[d]) << (limit - d))
        .sum();
    while kraft > 1 << limit {
        count[limit] -= 1;
        for d in (1..limit).rev() {
            if count[d] > 0 {
                count[d] -= 1;
                count[d + 1] += 2;
                break;
            }
        }
        kraft -= 1;
    }
    let mut lens = vec![0u8; freq.len()];
    let mut j = syms.len();
    for (d, &c) in count.iter().enumerate().take(limit + 1).skip(1) {
        for _ in 0..c {
            j -= 1;
            lens[syms[j].1] = d as u8;
        }
    }
    lens
}

/// Turns weights sorted ascending into the depths of an optimal prefix code (A. Moffat and
/// J. Katajainen, "In-place calculation of minimum-redundancy codes", 1995).
fn minimum_redundancy(a: &mut [u32]) {
    let n = a.len();
    match n {
        0 => return,
        1 => {
            a[0] = 1;
            return;
        }
        _ => {}
    }
    a[0] += a[1];
    let (mut root, mut leaf) = (0, 2);
    for next in 1..n - 1 {
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    let (mut avail, mut used, mut depth) = (1i64, 0i64, 0u32);
    let (mut root, mut next) = (n as i64 - 2, n as i64 - 1);
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
}

/// The codes of canonical Huffman lengths (RFC 1951, 3.2.2), bit-reversed: deflate sends a
/// code from its highest bit, and the stream is filled from the lowest.
pub(super) fn canonical(lens: &[u8]) -> Vec<u16> {
    let mut count = [0u16; 16];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    lens.iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[usize::from(l)];
            next[usize::from(l)] += 1;
            c.reverse_bits() >> (16 - l)
        })
        .collect()
}

/// The code lengths as the code-length alphabet sends them: a length, 16 (the last one again
/// 3 to 6 times), 17 (3 to 10 zeros) or 18 (11 to 138 zeros), with their extra bits.
pub(super) fn run_lengths(lens: &[u8]) -> Vec<(u8, u8, u8)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lens.len() {
        let v = lens[i];
        let run = lens[i..].iter().take_while(|&&l| l == v).count();
        let mut r = run;
        if v == 0 {
            while r >= 11 {
                let k = r.min(138);
                out.push((18, 7, (k - 11) as u8));
                r -= k;
            }
            if r >= 3 {
                out.push((17, 3, (r - 3) as u8));
                r = 0;
            }
        } else {
            out.push((v, 0, 0));
            r -= 1;
            while r >= 3 {
                let k = r.min(6);
                out.push((16, 2, (k - 3) as u8));
                r -= k;
            }
        }
        out.extend(std::iter::repeat_n((v, 0, 0), r));
        i += run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_fit_their_limit_and_make_a_full_code() {
        // Fibonacci weights make the deepest optimal code
        let mut fib = vec![1u32, 1];
        while fib.len() < 40 {
            let k = fib.len();
            fib.push(fib[k - 1] + fib[k - 2]);
        }
        for (freq, limit) in [
            (fib.clone(), 15),
            (fib[..19].to_vec(), 7),
            (vec![5, 0, 3], 15),
        ] {
            let lens = code_lengths(&freq, limit);
            assert!(lens.iter().all(|&l| usize::from(l) <= limit));
            let kraft: f64 = lens
                .iter()
                .filter(|&&l| l > 0)
                .map(|&l| 0.5f64.powi(i32::from(l)))
                .sum();
            assert!((kraft - 1.0).abs() < 1e-12, "{lens:?}");
        }
    }
}
