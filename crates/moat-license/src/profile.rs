//! The deployment profile: what the user intends to do with a model. Read from the
//! `[deployment]` table of `moat.toml` (every key optional) and overridden by CLI flags.
//! This module only holds the answers; what a license makes of them is in `check.rs`.

use serde::{Deserialize, Serialize};

/// How a model will be used. The default is the narrowest use: running it yourself,
/// non-commercially, with nothing shared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentProfile {
    /// Any commercial use, internal or external.
    pub commercial: bool,
    /// Monthly active users of the products or services that use the model (licensee plus
    /// affiliates). Undeclared means "below any cap", and the verdict notes the assumption.
    pub monthly_active_users: Option<u64>,
    /// Serving the model to third parties: a public API, a hosted app.
    pub third_party_api: bool,
    /// Redistributing the weights or a derivative (fine-tune, merge, quantization).
    pub redistribute_weights: bool,
    /// Training or improving other models on this model's outputs (distillation included).
    pub train_on_outputs: bool,
    /// The deployer is an individual domiciled in, or a company with its principal place of
    /// business in, the European Union.
    pub eu_based: bool,
    /// Global consolidated monthly revenue of the deployer's company (or employer), in USD.
    /// Undeclared means "below any cap", and the verdict notes the assumption.
    pub monthly_revenue_usd: Option<u64>,
    /// Whether the model takes images, audio or video (some EU clauses cover only multimodal
    /// models). Undeclared leaves it to the license's rule.
    pub multimodal: Option<bool>,
}

/// CLI flags: each `Some` replaces the profile's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileOverrides {
    pub commercial: Option<bool>,
    pub monthly_active_users: Option<u64>,
    pub third_party_api: Option<bool>,
    pub redistribute_weights: Option<bool>,
    pub train_on_outputs: Option<bool>,
    pub eu_based: Option<bool>,
    pub monthly_revenue_usd: Option<u64>,
    pub multimodal: Option<bool>,
}

impl DeploymentProfile {
    /// This profile with every flag the user gave put over it.
    pub fn with_overrides(self, flags: &ProfileOverrides) -> DeploymentProfile {
        DeploymentProfile {
            commercial: flags.commercial.unwrap_or(self.commercial),
            monthly_active_users: flags.monthly_active_users.or(self.monthly_active_users),
            third_party_api: flags.third_party_api.unwrap_or(self.third_party_api),
            redistribute_weights: flags
                .redistribute_weights
                .unwrap_or(self.redistribute_weights),
            train_on_outputs: flags.train_on_outputs.unwrap_or(self.train_on_outputs),
            eu_based: flags.eu_based.unwrap_or(self.eu_based),
            monthly_revenue_usd: flags.monthly_revenue_usd.or(self.monthly_revenue_usd),
            multimodal: flags.multimodal.or(self.multimodal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct MoatToml {
        deployment: DeploymentProfile,
    }

    #[test]
    fn reads_a_partial_deployment_table() {
        let parsed: MoatToml =
            toml::from_str("[deployment]\ncommercial = true\nmonthly_active_users = 800000000\n")
                .expect("valid toml");
        assert_eq!(
            parsed.deployment,
            DeploymentProfile {
                commercial: true,
                monthly_active_users: Some(800_000_000),
                ..DeploymentProfile::default()
            }
        );
    }

    #[test]
    fn rejects_misspelt_keys() {
        // A typo must not silently drop a restriction from the gate's view.
        let parsed: Result<MoatToml, _> = toml::from_str("[deployment]\ncomercial = true\n");
        assert!(parsed.is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = DeploymentProfile {
            commercial: true,
            eu_based: true,
            ..DeploymentProfile::default()
        };
        let flags = ProfileOverrides {
            commercial: Some(false),
            monthly_revenue_usd: Some(5),
            ..ProfileOverrides::default()
        };
        let merged = file.with_overrides(&flags);
        assert!(!merged.commercial);
        assert!(merged.eu_based);
        assert_eq!(merged.monthly_revenue_usd, Some(5));
    }
}
