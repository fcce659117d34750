namespace Orchestrator.Daemon.Configuration;

/// <summary>Builds the effective configuration: defaults, then the file, then ORCHD_* variables, then flags.</summary>
internal static class ConfigLoader
{
    public const string ConfigEnv = "ORCHD_CONFIG";

    public static OrchdConfig Load(CommandLine commandLine, Func<string, string?> getEnv)
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

        return builder.Build();
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
