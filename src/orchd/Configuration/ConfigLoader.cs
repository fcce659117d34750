namespace Orchestrator.Daemon.Configuration;

/// <summary>Builds the effective configuration: defaults, then the file, then ORCHD_* variables, then flags.</summary>
internal static class ConfigLoader
{
    public const string ConfigEnv = "ORCHD_CONFIG";

    /// <param name="enrolment">Take the node's credentials, name, labels and trusted keys from its
    /// enrolment (state dir identity/) when the configuration gives no NATS credentials.</param>
    public static OrchdConfig Load(CommandLine commandLine, Func<string, string?> getEnv, bool enrolment = true)
    {
        var builder = new ConfigBuilder();

        var envConfig = getEnv(ConfigEnv);
        var explicitPath = commandLine.ConfigFile ?? (string.IsNullOrEmpty(envConfig) ? null : envConfig);
        var path = explicitPath ?? OrchdConfig.DefaultConfigFile;
        var origin = commandLine.ConfigFile is not null ? "--config" : ConfigEnv;
        if (File.Exists(path))
        {
            string text;
            try
            {
                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConfigException($"{path}: cannot read the config file: {e.Message}; fix its permissions");
            }
            builder.ConfigFile = Path.GetFullPath(path);
            YamlConfigReader.Apply(builder, path, text);
        }
        else if (explicitPath is not null)
        {
            var what = Directory.Exists(path) ? "is a directory, not a file" : "does not exist";
            throw new ConfigException($"{path}: the config file given by {origin} {what}; create it or point {origin} at the right file");
        }

        foreach (var setting in ConfigSchema.All)
        {
            var value = getEnv(setting.Env);
            if (value is null)
            {
                continue;
            }
            try
            {
                ApplyText(builder, setting, value, replaceList: true);
            }
            catch (ConfigValueException e)
            {
                throw new ConfigException($"environment variable {setting.Env}: {setting.Key}: {e.Message}");
            }
        }

        var listsCleared = new HashSet<Setting>();
        foreach (var (setting, value) in commandLine.Flags)
        {
            try
            {
                ApplyText(builder, setting, value, replaceList: listsCleared.Add(setting));
            }
            catch (ConfigValueException e)
            {
                throw new ConfigException($"flag {setting.Flag}: {setting.Key}: {e.Message}");
            }
        }

        if (enrolment)
        {
            ApplyEnrolment(builder);
        }
        return builder.Build();
    }

    /// <summary>
    /// A device enrolled with `orchd enroll` (docs/nats-security.md, "Enrolment") connects with the
    /// credentials it got, under the name it enrolled with, with the token's labels under its
    /// configured ones and the fleet's trusted keys when none are configured; a worker's JWT
    /// cannot schedule, so fleet.scheduler follows the enrolment. Credentials in the configuration
    /// win: the enrolment is then left alone.
    /// </summary>
    private static void ApplyEnrolment(ConfigBuilder builder)
    {
        if (builder.NatsCredsFile is not null || builder.NatsNKeySeedFile is not null || builder.NatsUser is not null || builder.NatsToken is not null)
        {
            return;
        }
        Orchestrator.Api.EnrollReply? enrolled;
        try
        {
            enrolled = Orchestrator.Client.Identity.DeviceIdentity.Read(builder.StateDir);
        }
        catch (FormatException e)
        {
            throw new ConfigException(e.Message);
        }
        if (enrolled is null)
        {
            return;
        }
        if (builder.NodeNameSet && builder.NodeName != enrolled.Node)
        {
            throw new ConfigException($"node_name '{builder.NodeName}' is not the name this device enrolled with ('{enrolled.Node}'); its credentials are for that name: remove node_name, or enrol again under the new name");
        }
        builder.NodeName = enrolled.Node;
        builder.NatsCredsFile = Orchestrator.Client.Identity.DeviceIdentity.CredsPath(builder.StateDir);
        foreach (var (key, value) in enrolled.Labels)
        {
            builder.Labels.TryAdd(key, value);
        }
        if (builder.TrustedKeys.Count == 0)
        {
            builder.TrustedKeys.AddRange(enrolled.TrustedKeys);
        }
        builder.Scheduler &= enrolled.Scheduler;
    }

    private static void ApplyText(ConfigBuilder builder, Setting setting, string value, bool replaceList)
    {
        switch (setting.Shape)
        {
            case SettingShape.Scalar:
                setting.Apply(builder, value);
                break;
            case SettingShape.List:
                if (replaceList)
                {
                    setting.Reset?.Invoke(builder);
                }
                foreach (var item in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    setting.Apply(builder, item);
                }
                break;
            case SettingShape.Map:
                foreach (var item in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    setting.Apply(builder, item);
                }
                break;
        }
    }
}
