//! Evolutionary maximisation of a cheap fitness (a model's prediction or an acquisition) over the
//! discrete schedule space: mutation and crossover of Traces, truncation selection.

use std::collections::{HashMap, HashSet};

use autotune_ir::Trace;
use autotune_schedules::SpaceGenerator;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Settings of one evolutionary run.
#[derive(Clone, Debug, PartialEq)]
pub struct EvolutionConfig {
    /// Survivors per generation.
    pub population: usize,
    /// Generations of children after the initial population.
    pub generations: usize,
    /// Fresh random samples in the initial population (besides the seeds).
    pub initial_random: usize,
    /// Probability that a child is a mutation of one parent; otherwise it is a crossover of two.
    pub mutation_probability: f64,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig { population: 64, generations: 4, initial_random: 128, mutation_probability: 0.7 }
    }
}

/// Evolves a population from `seeds` plus random samples, scoring each distinct trace once with
/// `fitness` (batched; `None`: not a valid point). Returns every valid trace it scored, best
/// first (ties by key, so the order is deterministic).
pub fn evolve(
    space: &dyn SpaceGenerator,
    seeds: &[Trace],
    fitness: &mut dyn FnMut(&[Trace]) -> Vec<Option<f64>>,
    config: &EvolutionConfig,
    rng: &mut ChaCha8Rng,
) -> Vec<(Trace, f64)> {
    let mut scored: HashMap<String, (Trace, f64)> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut score_new = |candidates: Vec<Trace>, scored: &mut HashMap<String, (Trace, f64)>| {
        let fresh: Vec<Trace> = candidates.into_iter().filter(|t| seen.insert(t.key())).collect();
        if fresh.is_empty() {
            return;
        }
        for (trace, value) in fresh.iter().zip(fitness(&fresh)) {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                scored.insert(trace.key(), (trace.clone(), value));
            }
        }
    };

    let mut initial: Vec<Trace> = seeds.to_vec();
    initial.extend((0..config.initial_random).map(|_| space.sample(rng)));
    score_new(initial, &mut scored);
    let mut population = best_of(&scored, config.population);

    for _ in 0..config.generations {
        if population.is_empty() {
            break;
        }
        let children: Vec<Trace> = (0..config.population.max(1))
            .map(|_| {
                let parent = tournament(&population, rng);
                if population.len() < 2 || rng.gen_bool(config.mutation_probability.clamp(0.0, 1.0)) {
                    space.mutate(parent, rng)
                } else {
                    let other = tournament(&population, rng);
                    space.crossover(parent, other, rng)
                }
            })
            .collect();
        score_new(children, &mut scored);
        population = best_of(&scored, config.population);
    }

    best_of(&scored, usize::MAX)
}

/// The `n` fittest scored traces, best first. Ties (common: a forest predicts the same value for
/// whole regions) go by trace key, a hash: deterministic without favouring small decision values.
fn best_of(scored: &HashMap<String, (Trace, f64)>, n: usize) -> Vec<(Trace, f64)> {
    let mut all: Vec<(&String, &(Trace, f64))> = scored.iter().collect();
    all.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1).then_with(|| a.0.cmp(b.0)));
    all.into_iter().take(n).map(|(_, scored)| scored.clone()).collect()
}

/// The fitter of two random members (the population is sorted best first, so the lower index).
fn tournament<'p>(population: &'p [(Trace, f64)], rng: &mut ChaCha8Rng) -> &'p Trace {
    let a = rng.gen_range(0..population.len());
    let b = rng.gen_range(0..population.len());
    &population[a.min(b)].0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::LandscapeSpace;
    use rand::SeedableRng;

    fn avx512_cpu() -> autotune_ir::CpuTarget {
        autotune_ir::CpuTarget::generic(autotune_ir::IsaLevel::Avx512, 2)
    }

    #[test]
    fn crossover_children_of_the_gemm_space_are_valid_and_mix_their_parents() {
        let task = autotune_ir::Task::matmul(200, 136, 72);
        let space = autotune_schedules::GemmSpace::new(&task, &avx512_cpu()).expect("space");
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut from_a, mut from_b) = (0, 0);
        for _ in 0..200 {
            let (a, b) = (space.sample(&mut rng), space.sample(&mut rng));
            let child = space.crossover(&a, &b, &mut rng);
            assert!(space.lower(&child).is_ok(), "{}", child.display());
            for decision in &child.decisions {
                from_a += usize::from(a.get(&decision.name) == Some(decision.value));
                from_b += usize::from(b.get(&decision.name) == Some(decision.value));
            }
        }
        assert!(from_a > 1000 && from_b > 1000, "{from_a} {from_b}");
        // A trace of another shape is adapted into this space.
        let other =
            autotune_schedules::GemmSpace::new(&autotune_ir::Task::matmul(1024, 1024, 1024), &avx512_cpu())
                .expect("space");
        let foreign = other.sample(&mut rng);
        assert!(space.lower(&space.crossover(&foreign, &foreign, &mut rng)).is_ok());
    }

    #[test]
    fn the_default_crossover_mixes_decisions_by_name() {
        let space = LandscapeSpace::new(4, 8);
        let a = space.point(&[0, 0, 0, 0]);
        let b = space.point(&[7, 7, 7, 7]);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let children: Vec<Trace> = (0..20).map(|_| space.crossover(&a, &b, &mut rng)).collect();
        assert!(children.iter().all(|c| c.decisions.iter().all(|d| d.value == 0 || d.value == 7)));
        assert!(children.iter().any(|c| c != &a && c != &b));
    }

    #[test]
    fn evolution_finds_the_maximum_of_a_smooth_fitness_with_few_evaluations() {
        let space = LandscapeSpace::new(6, 8);
        let target = space.optimum();
        let mut n_evaluated = 0;
        let mut fitness = |traces: &[Trace]| -> Vec<Option<f64>> {
            n_evaluated += traces.len();
            traces.iter().map(|t| Some(-space.distance_to_optimum(t))).collect()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let config =
            EvolutionConfig { population: 32, generations: 12, initial_random: 64, ..Default::default() };
        let result = evolve(&space, &[], &mut fitness, &config, &mut rng);
        assert_eq!(result[0].0, target, "best {:?}", result[0]);
        assert!(n_evaluated < 8usize.pow(6) / 20, "evaluated {n_evaluated}");
        assert!(result.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}
